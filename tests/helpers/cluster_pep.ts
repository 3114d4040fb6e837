// The Personal Eventing Protocol (XEP-0163) across a cluster, for
// tests/interop/cluster_pep_clients_test.ts: a three-node cluster (tests/helpers/cluster.ts, one
// PostgreSQL) with a c2s and an http listener (WebSocket) on each node; slixmpp clients that stay
// logged in while the test drives them (tests/interop/pep_client.py, one process each, commands
// and answers as JSON lines); @xmpp/client logins over TCP or WebSocket; and one canonical text
// for a payload, whoever parsed it, so that what was published and what was read compare as
// strings.
import { client, xml } from "@xmpp/client";
import { C2S_LISTENER, DOMAIN, startCluster, type TestCluster } from "./cluster.ts";
import { until } from "./until.ts";
import type { Element } from "../../src/xml/element.ts";
import { parseStanza } from "../../src/xml/parse_string.ts";
import { PyDriven, type PyLine } from "./py_driven.ts";

// The test cluster's certificate is self-signed; @xmpp/client offers no CA option (STARTTLS).
Deno.env.set("NODE_TLS_REJECT_UNAUTHORIZED", "0");

export const PUBSUB = "http://jabber.org/protocol/pubsub";
export const PUBSUB_ERRORS = "http://jabber.org/protocol/pubsub#errors";

/**
 * Three nodes, each with its c2s listener (c.nodes[i].port) and an http listener (WebSocket at
 * /xmpp-websocket, the second port each node logs); `users` created, each pair of `friends`
 * subscribed both ways; formed.
 */
export async function pepCluster(
  users: string[],
  friends: [string, string][],
): Promise<TestCluster> {
  const c = await startCluster(3, {
    overrides: { listeners: [C2S_LISTENER, { type: "http", bind: "{node_host}", port: 0 }] },
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

/** Node i's c2s address as @xmpp/client names it (STARTTLS). */
export const tcpService = (c: TestCluster, i: number) =>
  `xmpp://${c.nodes[i].host}:${c.nodes[i].port}`;

/** Node i's WebSocket endpoint (RFC 7395). */
export const wsService = (c: TestCluster, i: number) =>
  `ws://${c.nodes[i].host}:${c.nodes[i].process!.ports[1]}/xmpp-websocket`;

/**
 * One text for an XML element however it was written: `<{ns}name a='v' …>text children</>`,
 * attributes sorted (no xmlns), text trimmed. tests/interop/pep_client.py writes the same.
 */
export function canon(xmlText: string): string {
  const el = parseStanza(xmlText);
  if (!el) throw new Error(`not XML: ${xmlText}`);
  return canonElement(el, "");
}

function canonElement(el: Element, parentNs: string): string {
  const ns = el.attrs.xmlns ?? parentNs;
  const attrs = Object.entries(el.attrs)
    .filter(([k, v]) => v !== undefined && k !== "xmlns" && !k.startsWith("xmlns:"))
    .sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0)
    .map(([k, v]) => ` ${k}='${v}'`).join("");
  const kids = el.children.filter((n): n is Element => typeof n !== "string");
  return `<{${ns}}${el.name}${attrs}>${el.text().trim()}${
    kids.map((k) => canonElement(k, ns)).join("")
  }</>`;
}

/** An item as the clients report it: its id and its payload in canonical form. */
export interface Item {
  id: string;
  payload: string | null;
}

/** A line pep_client.py printed (an event or the answer to a command). */
export type { PyLine };

/** A pubsub#event notification a slixmpp client got. */
export interface PyPepEvent extends PyLine {
  frm: string;
  to: string;
  node: string;
  items: Item[];
  retracts: string[];
  t: number;
}

/** An error answer: condition, type and the application-specific children ("{ns}name"). */
export interface PyError {
  condition: string;
  type?: string;
  app?: string[];
  text?: string;
}

const SCRIPT = new URL("../interop/pep_client.py", import.meta.url).pathname;

/** A slixmpp client (pep_client.py) logged in on a node, driven by commands. */
export class PyPep extends PyDriven<PyLine> {
  ver = "";

  /**
   * Logs `user@localhost/resource` in on node i with slixmpp; `notify`: the namespaces it adds
   * NS+notify for in its caps; `presence` (default true): it sends its initial presence (with
   * caps) before it says it is ready.
   */
  static async start(
    c: TestCluster,
    i: number,
    user: string,
    resource: string,
    opts: { notify?: string[]; presence?: boolean } = {},
  ): Promise<PyPep> {
    const p = await new PyPep(`${user}/${resource} on n${i + 1}`, SCRIPT, [
      ...PyDriven.loginArgs(c, i, user, resource),
      "--notify",
      (opts.notify ?? []).join(","),
      ...(opts.presence === false ? ["--no-presence"] : []),
    ]).loggedIn();
    p.ver = String(p.ready!.ver);
    return p;
  }

  /** Notifications received (of `node`, when given). */
  pep(node?: string): PyPepEvent[] {
    return (this.of("pep") as PyPepEvent[]).filter((e) => node === undefined || e.node === node);
  }
  /** Chat messages received with this body. */
  messages(body: string): PyLine[] {
    return this.of("message").filter((m) => m.body === body);
  }
  /** Sends a command that must fail; its error. */
  async fails(cmd: string, args: Record<string, unknown> = {}): Promise<PyError> {
    const r = await this.call(cmd, args);
    if (r.ok) {
      throw new Error(
        `${this.name}: ${cmd} ${JSON.stringify(args)} succeeded: ${JSON.stringify(r)}`,
      );
    }
    return r.error as PyError;
  }
  /** The items of `node` at `jid` (a pubsub items request). */
  async items(jid: string, node: string, extra: Record<string, unknown> = {}): Promise<Item[]> {
    return (await this.ok("items", { jid, node, ...extra })).items as Item[];
  }
  protected override about(): string {
    return `, ver ${this.ver}`;
  }
}

// ---- @xmpp/client ----

interface XmppElement {
  is(name: string, xmlns?: string): boolean;
  name: string;
  attrs: Record<string, string>;
  getChild(name: string, xmlns?: string): XmppElement | undefined;
  getChildren(name: string, xmlns?: string): XmppElement[];
  getChildElements(): XmppElement[];
  toString(): string;
}

// deno-lint-ignore no-explicit-any
type XmppClient = any;

/** A logged-in @xmpp/client: items requests and every stanza it received. */
export class JsPep {
  readonly received: XmppElement[] = [];
  private constructor(readonly xmpp: XmppClient, readonly jid: string) {}

  /** Logs in at `service` (xmpp:// for c2s with STARTTLS, ws:// for WebSocket). */
  static async connect(service: string, username: string, resource: string): Promise<JsPep> {
    const xmpp = client({ service, domain: DOMAIN, username, password: "secret", resource });
    const received: XmppElement[] = [];
    xmpp.on("stanza", (el: XmppElement) => received.push(el));
    // Errors reach start()'s promise too; without a listener an "error" event would throw.
    xmpp.on("error", () => {});
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const jid = String(
        await Promise.race([
          xmpp.start(),
          new Promise((_, reject) =>
            timer = setTimeout(() => reject(new Error(`@xmpp/client login at ${service}`)), 15_000)
          ),
        ]),
      );
      const c = new JsPep(xmpp, jid);
      c.received.push(...received);
      xmpp.on("stanza", (el: XmppElement) => c.received.push(el));
      return c;
    } catch (e) {
      await xmpp.stop().catch(() => {});
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * The items of `node` at `jid`, as <pubsub><items node/></pubsub> answered; or the error
   * ({ condition, type, app }) when the request is refused.
   */
  async items(jid: string, node: string): Promise<Item[] | { error: PyError }> {
    try {
      const answer: XmppElement = await this.xmpp.iqCaller.request(
        xml(
          "iq",
          { type: "get", to: jid },
          xml("pubsub", { xmlns: PUBSUB }, xml("items", { node })),
        ),
        10_000,
      );
      const items = answer.getChild("pubsub", PUBSUB)?.getChild("items");
      return (items?.getChildren("item") ?? []).map((it) => {
        const payload = it.getChildElements()[0];
        return { id: it.attrs.id, payload: payload ? canon(String(payload)) : null };
      });
    } catch (e) {
      const err = e as { condition?: string; type?: string; element?: XmppElement };
      if (!err.condition) throw e;
      const app = (err.element?.getChildElements() ?? [])
        .filter((c) => c.attrs.xmlns !== "urn:ietf:params:xml:ns:xmpp-stanzas")
        .map((c) => `{${c.attrs.xmlns}}${c.name}`);
      return { error: { condition: err.condition, type: err.type, app } };
    }
  }

  /** Stops the client, or gives up on it after 5 s (its socket then closes with the process). */
  async stop(): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      this.xmpp.stop().catch(() => {}),
      new Promise((r) => timer = setTimeout(r, 5000)),
    ]);
    clearTimeout(timer);
  }
}

export { DOMAIN, until };
