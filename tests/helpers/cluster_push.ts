// Push (XEP-0357) and client state indication (XEP-0352) across a cluster, for
// tests/interop/cluster_push_csi_test.ts: a three-node cluster (tests/helpers/cluster.ts, one
// PostgreSQL) whose nodes each have a c2s, a component and an http listener, with an external
// component domain for the app server and push.min_interval short; slixmpp clients that stay
// logged in while the test drives them (tests/interop/push_csi_client.py, one process each,
// commands and answers as JSON lines) and can be killed with SIGKILL (their connection gone
// without a closing stream: the session detaches); an app server logged in as a component on a
// node's own address that answers every publish; the summary form of a push read back; /metrics
// and the shared store read by the test.
import { createHash } from "node:crypto";
import { dirname } from "node:path";
import { parse, stringify } from "yaml";
import { C2S_LISTENER, DOMAIN, startCluster, type TestCluster } from "./cluster.ts";
import { scrape } from "./metrics.ts";
import { RawClient } from "./raw_client.ts";
import { PyDriven, type PyLine } from "./py_driven.ts";
import { until } from "./until.ts";
import { parseConfig } from "../../src/config/load.ts";
import { openStore } from "../../src/storage/open.ts";
import type { Store } from "../../src/storage/store.ts";
import { formValues } from "../../src/xml/data_form.ts";
import type { Element } from "../../src/xml/element.ts";
import { NS } from "../../src/xml/ns.ts";

export const APP = `push.${DOMAIN}`;
export const APP_SECRET = "app-s3cret";
/** push.min_interval of the test cluster, ms. */
export const MIN_INTERVAL_MS = 1000;

/** Listener indexes in each node's `process.ports`. */
export const PORT = { c2s: 0, component: 1, http: 2 } as const;

/**
 * Three nodes with c2s, component and http listeners on their own addresses; the app server's
 * component domain; pushes coalesced over MIN_INTERVAL_MS; resumable sessions kept 300 s;
 * `users` created, each pair of `friends` subscribed both ways; formed.
 */
export async function pushCluster(
  users: string[],
  friends: [string, string][],
): Promise<TestCluster> {
  const c = await startCluster(3, {
    overrides: {
      hosts: [{ domain: DOMAIN, components: [{ domain: APP, secret: APP_SECRET }] }],
      listeners: [
        C2S_LISTENER,
        { type: "component", bind: "{node_host}", port: 0 },
        { type: "http", bind: "{node_host}", port: 0 },
      ],
      push: { min_interval: `${MIN_INTERVAL_MS}ms` },
      stream_management: { resume_timeout: "300s" },
    },
  });
  try {
    for (const u of users) await c.addUser(u);
    for (const [a, b] of friends) await c.befriend(a, b);
    await c.formed();
  } catch (e) {
    await c.stop();
    throw e;
  }
  return c;
}

/** Node i's /metrics samples. */
export async function metrics(c: TestCluster, i: number): Promise<Map<string, number>> {
  const node = c.nodes[i];
  const s = await scrape(`http://${node.host}:${node.process!.ports[PORT.http]}`);
  if (s.status !== 200) throw new Error(`/metrics of ${node.name}: ${s.status}`);
  return s.samples;
}

/**
 * The test's own connection to the cluster's shared store (the PostgreSQL database of its
 * configuration file), to see what the nodes stored.
 */
export async function clusterStore(c: TestCluster): Promise<Store> {
  const base = parse(await Deno.readTextFile(c.configFile)) as Record<string, unknown>;
  const config = {
    ...base,
    cluster: undefined,
    listeners: undefined,
    hosts: undefined,
    data_dir: dirname(c.configFile),
  };
  return await openStore(parseConfig(stringify(config), "store.yaml"));
}

// ---- the app server ----

/** Whether a stanza is a push: <iq type=set><pubsub><publish><item><notification/>. */
export const isPush = (e: Element) =>
  e.name === "iq" && e.attrs.type === "set" &&
  !!e.child("pubsub", NS.pubsub)?.child("publish")?.child("item")?.child("notification", NS.push);

/** A push as the app server got it: its summary fields and the publish-options sent with it. */
export interface Push {
  node: string;
  from: string;
  formType?: string;
  count: number;
  sender?: string;
  body?: string;
  /** The publish-options form's fields but FORM_TYPE. */
  options: Record<string, string[]>;
  /** performance.now() when the test saw it. */
  at: number;
  iq: Element;
}

export function readPush(iq: Element, at: number): Push {
  const pubsub = iq.child("pubsub", NS.pubsub)!;
  const form = pubsub.child("publish")!.child("item")!.child("notification")!.child(
    "x",
    NS.dataForms,
  )!;
  const fields = formValues(form);
  const optionsForm = pubsub.child("publish-options")?.child("x", NS.dataForms);
  const options = Object.fromEntries(
    optionsForm ? [...formValues(optionsForm)].filter(([k]) => k !== "FORM_TYPE") : [],
  );
  return {
    node: pubsub.child("publish")!.attrs.node ?? "",
    from: iq.attrs.from ?? "",
    formType: fields.get("FORM_TYPE")?.[0],
    count: Number(fields.get("message-count")?.[0]),
    sender: fields.get("last-message-sender")?.[0],
    body: fields.get("last-message-body")?.[0],
    options,
    at,
    iq,
  };
}

/**
 * An app server (XEP-0357 §3: a pubsub service) as an external component (XEP-0114) logged in on
 * a node's own address: it answers each publish with a result, or with an error for the nodes
 * in `refuse`, and keeps every push it got, in order.
 */
export class AppServer {
  readonly pushes: Push[] = [];
  /** Publish nodes whose pushes it answers with <item-not-found/> (type cancel). */
  readonly refuse = new Set<string>();
  /** Answers to the iqs it sent itself, by id. */
  readonly answers = new Map<string, Element>();
  #timer: ReturnType<typeof setInterval>;
  #ids = 0;

  private constructor(readonly conn: RawClient) {
    this.#timer = setInterval(() => this.#answer(), 5);
  }

  static async login(host: string, port: number): Promise<AppServer> {
    const conn = await RawClient.connect(port, { host });
    conn.send(
      `<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='${APP}'>`,
    );
    await until(() => conn.streamAttrs !== undefined || conn.closed, "the component stream");
    if (!conn.streamAttrs) throw new Error("no stream header for the component");
    conn.send(
      `<handshake>${
        createHash("sha1").update(conn.streamAttrs.id + APP_SECRET).digest("hex")
      }</handshake>`,
    );
    await conn.waitFor((e) => e.name === "handshake", 5000, "the component handshake");
    return new AppServer(conn);
  }

  #answer(): void {
    const received = this.conn.received.splice(0);
    for (const e of received) {
      if (isPush(e)) {
        const p = readPush(e, performance.now());
        this.pushes.push(p);
        this.conn.send(
          this.refuse.has(p.node)
            ? `<iq type='error' id='${e.attrs.id}' to='${e.attrs.from}' from='${APP}'>` +
              `<error type='cancel'><item-not-found xmlns='${NS.stanzaErrors}'/></error></iq>`
            : `<iq type='result' id='${e.attrs.id}' to='${e.attrs.from}' from='${APP}'/>`,
        );
      } else if (e.name === "iq" && (e.attrs.type === "result" || e.attrs.type === "error")) {
        this.answers.set(e.attrs.id ?? "", e);
      }
    }
  }

  /** Pushes to `node` (all when undefined), in order of arrival. */
  to(node?: string): Push[] {
    return this.pushes.filter((p) => node === undefined || p.node === node);
  }

  /** Waits until `n` pushes to `node` came; the n-th. */
  async nth(node: string, n: number, ms = 10_000): Promise<Push> {
    await until(() => this.to(node).length >= n, `push ${n} to node ${node}`, ms);
    return this.to(node)[n - 1];
  }

  /** Sends an XEP-0199 ping to `to` and waits for its answer (of either type). */
  async ping(to: string, ms = 10_000): Promise<Element> {
    const id = `fence${++this.#ids}`;
    this.conn.send(
      `<iq type='get' id='${id}' from='${APP}' to='${to}'><ping xmlns='urn:xmpp:ping'/></iq>`,
    );
    await until(() => this.answers.has(id), `the answer to ${id} from ${to}`, ms);
    return this.answers.get(id)!;
  }

  close(): void {
    clearInterval(this.#timer);
    this.conn.close();
  }
}

// ---- slixmpp clients ----

/** A line push_csi_client.py printed (an event or the answer to a command). */
export interface PushLine extends PyLine {
  t?: number;
  frm?: string;
  type?: string | null;
  id?: string | null;
  body?: string | null;
  chat_state?: string | null;
  status?: string | null;
  show?: string | null;
  /** Where it is in the client's output, from 0. */
  index: number;
  [k: string]: unknown;
}

const SCRIPT = new URL("../interop/push_csi_client.py", import.meta.url).pathname;

/** A slixmpp client (push_csi_client.py) logged in on a node, driven by commands. */
export class PyClient extends PyDriven<PushLine> {
  /** Logs `user@localhost/resource` in on node i with slixmpp (resumable stream management). */
  static start(c: TestCluster, i: number, user: string, resource: string): Promise<PyClient> {
    const name = `${user}/${resource} on ${c.nodes[i].name}`;
    return new PyClient(name, SCRIPT, PyDriven.loginArgs(c, i, user, resource)).loggedIn();
  }

  /** Messages and presences from `from` (a full JID, or a bare one: any of its resources). */
  stanzasFrom(from: string, after = -1): PyLine[] {
    return this.lines.filter((l) =>
      l.index > after && (l.event === "message" || l.event === "presence") &&
      (l.frm === from || l.frm?.startsWith(from + "/"))
    );
  }
  /** The index of the last line so far. */
  mark(): number {
    return this.lines.length - 1;
  }
}
