// A BOSH client (XEP-0124, XEP-0206) over fetch for protocol tests: exact <body/> wrappers, every
// response parsed, and a session that logs in with SCRAM and keeps a request held as a browser
// client does (at most `requests` of them at once).
import type { Element } from "../../src/xml/element.ts";
import { parseStanza } from "../../src/xml/parse_string.ts";
import { NS } from "../../src/xml/ns.ts";
import type { TestServer } from "./server.ts";
import { ScramClient, type ScramHash } from "./scram.ts";

export const NS_HTTPBIND = "http://jabber.org/protocol/httpbind";
export const XBOSH = "xmlns:xmpp='urn:xmpp:xbosh'";

export interface BoshResponse {
  status: number;
  headers: Headers;
  text: string;
  /** The <body/>, parsed (null when the response is not XML). */
  body: Element | null;
}

export function boshUrl(port: number): string {
  return `http://127.0.0.1:${port}/http-bind`;
}

/** POSTs `text` as it is. */
export async function post(
  port: number,
  text: string,
  headers: Record<string, string> = {},
): Promise<BoshResponse> {
  const res = await fetch(boshUrl(port), {
    method: "POST",
    body: text,
    headers: { "content-type": "text/xml; charset=utf-8", ...headers },
    // Longer than any `wait` of the tests: a request never answered fails the test.
    signal: AbortSignal.timeout(20_000),
  });
  const body = await res.text();
  return { status: res.status, headers: res.headers, text: body, body: parseStanza(body) };
}

/** A <body/> wrapper: `attrs` is attribute text (` name='value'`…). */
export function wrap(attrs: string, payload = ""): string {
  return `<body xmlns='${NS_HTTPBIND}'${attrs}>${payload}</body>`;
}

/** The session creation request's attributes. */
export function creation(rid: number, attrs = "wait='10' hold='1'", to = "localhost"): string {
  return ` rid='${rid}' to='${to}' xml:lang='en' ver='1.6' xmpp:version='1.0' ${XBOSH} ${attrs}`;
}

export class BoshClient {
  sid = "";
  jid = "";
  /** The session creation response. */
  created!: Element;
  /** Payloads received, in order, until a test takes them. */
  received: Element[] = [];
  /** The response that ended the session, once one did. */
  terminated: Element | undefined;
  #inflight = new Set<Promise<void>>();
  #error: unknown;

  private constructor(readonly port: number, public rid: number) {}

  /** Creates a session (`attrs`: wait, hold…). */
  static async create(port: number, attrs?: string): Promise<BoshClient> {
    const c = new BoshClient(port, 1_000_000 + Math.floor(Math.random() * 1_000_000_000));
    const r = await post(port, wrap(creation(c.rid, attrs)));
    if (!r.body?.attrs.sid) throw new Error("no BOSH session: " + r.text);
    c.created = r.body;
    c.sid = r.body.attrs.sid;
    c.#collect(r);
    return c;
  }

  /** Creates a session, authenticates with SCRAM, restarts the stream and binds a resource. */
  static async login(
    t: TestServer,
    user: string,
    opts: { attrs?: string; resource?: string; hash?: ScramHash } = {},
  ): Promise<BoshClient> {
    const c = await BoshClient.create(t.httpPort, opts.attrs);
    await c.waitFor((e) => e.name === "features", "stream features");
    const scram = new ScramClient(user, "secret", opts.hash ?? "SHA-1");
    await c.send(`<auth xmlns='${NS.sasl}' mechanism='${scram.mechanism}'>${scram.initial}</auth>`);
    const challenge = await c.waitFor((e) => e.name === "challenge", "SASL challenge");
    await c.send(`<response xmlns='${NS.sasl}'>${scram.respond(challenge.text())}</response>`);
    scram.verify((await c.waitFor((e) => e.name === "success", "SASL success")).text());
    await c.send("", ` xmpp:restart='true' to='localhost' xml:lang='en' ${XBOSH}`);
    await c.waitFor((e) => e.name === "features", "stream features after the restart");
    const res = opts.resource ? `<resource>${opts.resource}</resource>` : "";
    await c.send(
      `<iq type='set' id='bind' xmlns='jabber:client'><bind xmlns='${NS.bind}'>${res}</bind></iq>`,
    );
    const bound = await c.waitFor((e) => e.name === "iq" && e.attrs.id === "bind", "bind result");
    c.jid = bound.child("bind")?.childText("jid") ?? "";
    return c;
  }

  /** The wrapper of this session's request `rid` (the next one by default). */
  body(payload = "", attrs = "", rid = this.rid + 1): string {
    return wrap(` sid='${this.sid}' rid='${rid}'${attrs}`, payload);
  }

  /** Sends the next request without waiting for its response (kept in `received`), once fewer
   * than two are in flight. */
  async send(payload = "", attrs = ""): Promise<void> {
    while (this.#inflight.size >= 2) await Promise.race(this.#inflight);
    const text = this.body(payload, attrs, ++this.rid);
    const p: Promise<void> = post(this.port, text)
      .then((r) => this.#collect(r), (e) => this.#error = e)
      .finally(() => this.#inflight.delete(p));
    this.#inflight.add(p);
  }

  #collect(r: BoshResponse): void {
    if (!r.body) throw new Error(`not a <body/>: ${r.status} ${r.text}`);
    this.received.push(...r.body.elements());
    if (r.body.attrs.type === "terminate") this.terminated = r.body;
  }

  /** Waits, keeping a request held, until a payload matching `pred` comes (and takes it). */
  async waitFor(pred: (el: Element) => boolean, what: string, ms = 10_000): Promise<Element> {
    const deadline = Date.now() + ms;
    while (true) {
      const i = this.received.findIndex(pred);
      if (i >= 0) return this.received.splice(i, 1)[0];
      if (this.#error) throw this.#error;
      if (this.terminated) throw new Error(`session ended waiting for ${what}: ${this.terminated}`);
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      if (this.#inflight.size === 0) await this.send();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<void>((r) => timer = setTimeout(r, deadline - Date.now()));
      await Promise.race([...this.#inflight, late]);
      clearTimeout(timer);
    }
  }

  /** Resolves once no request is in flight (each held one answered, at the latest after `wait`). */
  async settled(): Promise<void> {
    while (this.#inflight.size > 0) await Promise.all(this.#inflight);
  }
}

/** A POST on a connection of its own that sends its headers and `sent`, the start of a body
 * declared `length` bytes long, and nothing more: a client that stalls, or that goes away. */
export class StalledPost {
  private constructor(readonly conn: Deno.Conn) {}

  static async start(port: number, sent: string, length: number): Promise<StalledPost> {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const head = `POST /http-bind HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\n` +
      `content-type: text/xml; charset=utf-8\r\ncontent-length: ${length}\r\n\r\n`;
    await conn.write(new TextEncoder().encode(head + sent));
    return new StalledPost(conn);
  }

  /** The response, once all of it has come; the connection is closed then, or after `ms`. */
  async response(ms = 20_000): Promise<BoshResponse> {
    const timer = setTimeout(() => this.close(), ms);
    const decoder = new TextDecoder();
    let raw = "";
    try {
      for (const buf = new Uint8Array(4096);;) {
        const n = await this.conn.read(buf).catch(() => null);
        if (n === null) throw new Error(`no whole response within ${ms} ms: ${raw}`);
        raw += decoder.decode(buf.subarray(0, n), { stream: true });
        const split = raw.indexOf("\r\n\r\n");
        if (split < 0) continue;
        const [status, ...lines] = raw.slice(0, split).split("\r\n");
        const headers = new Headers(lines.map((l) => {
          const colon = l.indexOf(":");
          return [l.slice(0, colon).trim(), l.slice(colon + 1).trim()] as [string, string];
        }));
        const text = raw.slice(split + 4);
        if (text.length < Number(headers.get("content-length") ?? Infinity)) continue;
        return { status: Number(status.split(" ")[1]), headers, text, body: parseStanza(text) };
      }
    } finally {
      clearTimeout(timer);
      this.close();
    }
  }

  close(): void {
    try {
      this.conn.close();
    } catch {
      // Closed already.
    }
  }
}
