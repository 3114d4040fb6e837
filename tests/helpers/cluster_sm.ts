// Stream management (XEP-0198) across a cluster, for tests/integration/
// cluster_stream_management_test.ts: a client that resumes on any node as a real client does
// (it keeps every stanza it sent since <enable/> and, once resumed, sends again those the
// server's `<resumed h/>` says were not handled, in order), numbered traffic at a fixed rate, and
// the checks of what arrived (every number once, in order; duplicates are failures, never
// dropped). Built on SmClient (sm_client.ts), which connects to 127.0.0.1: the cluster's c2s
// listeners are moved there (LOOPBACK_C2S), each node on a port of its own.
import assert from "node:assert/strict";
import { C2S_LISTENER, type TestCluster } from "./cluster.ts";
import { bodies, isStanza, SmClient } from "./sm_client.ts";
import { eventually } from "./until.ts";
import { pick } from "../../src/component/balance.ts";
import type { Element } from "../../src/xml/element.ts";
import { NS } from "../../src/xml/ns.ts";

/** Stream management as the brief configures it: resumable for 300 s. */
export const SM_SETTINGS = {
  resume_timeout: "300s",
  max_resume_timeout: "3600s",
  max_unacked: 5000,
};

/** Every node's c2s listener on 127.0.0.1, on a port of its own (c.nodes[i].port). */
export const LOOPBACK_C2S = { listeners: [{ ...C2S_LISTENER, bind: "127.0.0.1" }] };

/**
 * A resource for `user` whose session, held by a node whose peers are `peers`, has its replica on
 * `replica` (the next node in rendezvous order of the full JID, as session_replicas.ts places it).
 */
export function resourceWithReplicaOn(user: string, peers: string[], replica: string): string {
  for (let i = 0; i < 1000; i++) {
    if (pick(peers, `${user}@localhost/phone${i}`) === replica) return `phone${i}`;
  }
  throw new Error(`no resource of ${user} has its replica on ${replica}`);
}

/** What node i says of itself in `parley cluster status` (resumable, replicas, adopted, …). */
export async function selfStatus(c: TestCluster, i: number): Promise<Record<string, unknown>> {
  const members = await c.status(i);
  return members.find((m) => m.node === c.nodes[i].name) ?? {};
}

/** Waits until node i holds `n` replicas of other nodes' sessions. */
export function replicasOn(c: TestCluster, i: number, n: number): Promise<void> {
  return eventually(
    async () => (await selfStatus(c, i)).replicas === n,
    `${n} session replica(s) on ${c.nodes[i].name}`,
    5000,
  );
}

/**
 * A stream-managed client whose session outlives its connections: it enables resumption once,
 * and resumes over new connections (to any node) with the h it has.
 */
export class ResumingClient {
  /** Its connections, first to last; the last is the current one. */
  readonly connections: SmClient[] = [];
  /**
   * The element from which each connection counts received stanzas (`<enabled/>` on the first,
   * `<resumed/>` on the others), by connection index.
   */
  readonly starts: Element[] = [];
  /** Every stanza written (or queued while detached) since <enable/>, in order. */
  readonly sent: string[] = [];
  /** The `h` of each `<resumed/>`, and how many stanzas were sent again after it. */
  readonly resumptions: { h: number; resent: number; at: number }[] = [];
  id = "";
  jid = "";
  #attached = false;
  #iq = 0;

  private constructor(readonly user: string) {}

  /** Logs in on `port`, binds `resource`, enables resumption; answers every <r/> from then on. */
  static async login(port: number, user: string, resource: string): Promise<ResumingClient> {
    const r = new ResumingClient(user);
    const c = await SmClient.login(port, user, { resource });
    c.autoAck = true;
    r.connections.push(c);
    r.jid = c.jid;
    const enabled = await c.enable({ resume: "true" });
    assert.equal(enabled.name, "enabled", `enable refused: ${enabled}`);
    assert.equal(enabled.attrs.resume, "true", `${enabled}`);
    assert.ok(enabled.attrs.id, `no id in ${enabled}`);
    r.id = enabled.attrs.id;
    r.starts.push(enabled);
    r.#attached = true;
    return r;
  }

  get current(): SmClient {
    return this.connections[this.connections.length - 1];
  }

  /** The client's h: stanzas received since <enable/> (as of its current or last connection). */
  get h(): number {
    return this.current.inbound;
  }

  get attached(): boolean {
    return this.#attached && !this.current.closed;
  }

  /** Sends a stanza; while no connection is attached it waits for the resumption. */
  send(xml: string): void {
    this.sent.push(xml);
    if (this.attached) this.current.send(xml);
  }

  message(to: string, body: string, id: string): void {
    this.send(`<message to='${to}' type='chat' id='${id}'><body>${body}</body></message>`);
  }

  /** A ping round trip through the session (counted as the server counts it). */
  async sync(): Promise<void> {
    const id = `sync${++this.#iq}`;
    this.send(`<iq type='get' id='${id}' to='localhost'><ping xmlns='${NS.ping}'/></iq>`);
    const r = await this.current.waitFor(
      (e) => e.name === "iq" && e.attrs.id === id,
      5000,
      `the answer to ${id}`,
    );
    assert.equal(r.attrs.type, "result", `ping answered ${r}`);
  }

  /**
   * Leaves the current connection (whatever it still holds is lost, as on a dead network),
   * connects to `port` on 127.0.0.1, authenticates and resumes with the h it has. On
   * `<resumed h/>` it sends again, in order, what the server did not handle (and what was sent
   * meanwhile). Resolves with the server's answer, `<resumed/>` or `<failed/>`.
   */
  async resume(port: number): Promise<Element> {
    this.#attached = false;
    const old = this.current;
    old.drop();
    const h = old.inbound;
    const c = await SmClient.auth(port, this.user);
    c.autoAck = true;
    const answer = await c.resume(this.id, h);
    if (answer.name !== "resumed") return answer;
    const handled = Number(answer.attrs.h);
    assert.ok(
      Number.isInteger(handled) && handled <= this.sent.length,
      `<resumed/> acknowledges ${answer.attrs.h} of the ${this.sent.length} stanzas sent`,
    );
    c.jid = this.jid;
    this.connections.push(c);
    this.starts.push(answer);
    const resend = this.sent.slice(handled);
    for (const xml of resend) c.send(xml);
    this.#attached = true;
    this.resumptions.push({ h: handled, resent: resend.length, at: performance.now() });
    return answer;
  }

  /**
   * The stanzas received since <enable/> over every connection, as the client counted them:
   * on each connection, those after its <enabled/> or <resumed/>.
   */
  received(): Element[] {
    return this.connections.flatMap((c, i) => {
      const start = c.log.indexOf(this.starts[i]);
      return start < 0 ? [] : c.log.slice(start + 1).filter(isStanza);
    });
  }

  /** Everything received over every connection (for diagnostics and checks). */
  log(): Element[] {
    return this.connections.flatMap((c) => c.log);
  }

  close(): void {
    for (const c of this.connections) c.close();
  }
}

/**
 * Calls `send(i)` for i = 1…count at `rate` per second (each at its time from the first, so a
 * late one does not shift the rest), and `after(i)` right after each.
 */
export async function paced(
  count: number,
  rate: number,
  send: (i: number) => void,
  after: (i: number) => void = () => {},
): Promise<void> {
  const t0 = performance.now();
  for (let i = 1; i <= count; i++) {
    const wait = t0 + (i - 1) * 1000 / rate - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    send(i);
    after(i);
  }
}

/** The numbers of the bodies `${prefix}${n}` among these messages, in arrival order. */
export function numbered(els: Element[], prefix: string): number[] {
  const re = new RegExp(`^${prefix}(\\d+)$`);
  return bodies(els).flatMap((b) => {
    const m = re.exec(b);
    return m ? [Number(m[1])] : [];
  });
}

/**
 * What is wrong with a sequence that should be 1…count, each once and in order: "" when
 * nothing; otherwise the duplicates, the missing and the first out-of-order places.
 */
export function sequenceProblems(got: number[], count: number): string {
  const problems: string[] = [];
  const seen = new Map<number, number>();
  for (const n of got) seen.set(n, (seen.get(n) ?? 0) + 1);
  const dup = [...seen].filter(([, k]) => k > 1).map(([n, k]) => `${n}×${k}`);
  if (dup.length) problems.push(`duplicated: ${dup.slice(0, 40).join(" ")}`);
  const missing: number[] = [];
  for (let n = 1; n <= count; n++) if (!seen.has(n)) missing.push(n);
  if (missing.length) problems.push(`missing (${missing.length}): ${missing.slice(0, 60)}`);
  const extra = [...seen.keys()].filter((n) => n < 1 || n > count);
  if (extra.length) problems.push(`unexpected numbers: ${extra.slice(0, 20)}`);
  const disorder: string[] = [];
  for (let i = 1; i < got.length && disorder.length < 10; i++) {
    if (got[i] <= got[i - 1]) disorder.push(`${got[i - 1]} then ${got[i]} (at ${i})`);
  }
  if (disorder.length) problems.push(`out of order: ${disorder.join(", ")}`);
  return problems.join("; ");
}

/** Each node's log messages matching `pattern` (all when omitted), the last `max` of each. */
export function clusterLogs(c: TestCluster, pattern?: RegExp, max = 60): string {
  return c.nodes.map((n, i) => {
    const lines = c.logs(i).filter((l) => !pattern || pattern.test(l));
    return `--- ${n.name} (${lines.length} lines${pattern ? ` matching ${pattern}` : ""})\n` +
      lines.slice(-max).join("\n");
  }).join("\n");
}
