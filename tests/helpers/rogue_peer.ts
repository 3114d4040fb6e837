// A peer node that says whatever a test makes it say: it holds a real node certificate of the
// test cluster (as a compromised or buggy node would) and speaks through Parley's own mesh, so
// its frames pass the framing and reach the node's decoding.
import { Mesh } from "../../src/cluster/mesh.ts";
import type { TestCluster } from "./cluster.ts";
import { until } from "./until.ts";

const decoder = new TextDecoder();

export class RoguePeer {
  readonly mesh: Mesh;
  /** Links that came up, and went down, so far. */
  ups = 0;
  downs = 0;
  linked = false;
  /** Frames received from the target: [type, text]. */
  readonly received: [number, string][] = [];

  private constructor(
    c: TestCluster,
    readonly name: string,
    readonly target: number,
    creds: Awaited<ReturnType<TestCluster["pki"]["creds"]>>,
  ) {
    const me = c.nodes.find((n) => n.name === name)!;
    const to = c.nodes[target];
    this.mesh = new Mesh({
      node: name,
      listen: { host: me.host, port: me.clusterPort },
      peers: [{ node: to.name, host: to.host, port: to.clusterPort }],
      tls: creds,
      heartbeatMs: 200,
      deadAfterMs: 1000,
      backoff: { minMs: 1, maxMs: 20 },
    }, {
      up: () => {
        this.ups++;
        this.linked = true;
      },
      down: () => {
        this.downs++;
        this.linked = false;
      },
      message: (_peer, type, payload) => {
        if (this.received.length < 10_000) this.received.push([type, decoder.decode(payload)]);
      },
    });
  }

  /** Starts node `name` of the cluster (not started as a process) against node `target`. */
  static async start(c: TestCluster, name: string, target = 0): Promise<RoguePeer> {
    const rogue = new RoguePeer(c, name, target, await c.pki.creds(name));
    await rogue.mesh.start();
    await rogue.up();
    return rogue;
  }

  get targetName(): string {
    return this.mesh.options.peers[0].node;
  }

  /** Waits for a link to be up. */
  up(ms = 10_000): Promise<void> {
    return until(() => this.linked, `${this.name} linked to ${this.targetName}`, ms);
  }

  send(type: number, payload: string | Uint8Array): boolean {
    return this.mesh.send(this.targetName, type, payload);
  }

  stop(): Promise<void> {
    return this.mesh.stop();
  }
}
