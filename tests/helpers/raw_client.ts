// A minimal XMPP client over raw sockets for protocol tests and the benchmark: it sends exact
// bytes and exposes every element the server sends, including stream errors.
import net from "node:net";
import tls from "node:tls";
import { createHash } from "node:crypto";
import { StreamParser } from "../../src/xml/parser.ts";
import type { Attrs, Element } from "../../src/xml/element.ts";
import { NS } from "../../src/xml/ns.ts";
import { ScramClient, type ScramHash } from "./scram.ts";

export const HEADER = (to = "localhost") =>
  `<?xml version='1.0'?><stream:stream to='${to}' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>`;

export class RawClient {
  socket: net.Socket;
  received: Element[] = [];
  closed = false;
  streamAttrs: Attrs | undefined;
  jid = "";
  #waiters: (() => void)[] = [];
  #parser: StreamParser;
  #id = 0;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    this.#parser = new StreamParser({
      streamStart: (attrs) => {
        this.streamAttrs = attrs;
        this.#wake();
      },
      stanza: (el) => {
        this.received.push(el);
        this.#wake();
      },
      streamEnd: () => {
        this.closed = true;
        this.#wake();
      },
      streamError: () => {},
    }, { maxStanzaSize: 1 << 24, maxDepth: 100 });
    this.#listen(socket);
  }

  #listen(socket: net.Socket): void {
    socket.on("data", (d: Uint8Array) => this.#parser.write(d));
    socket.on("close", () => {
      this.closed = true;
      this.#wake();
    });
    socket.on("error", () => {});
  }

  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }

  static connect(port: number, opts: { tls?: boolean; host?: string } = {}): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const host = opts.host ?? "127.0.0.1";
      const socket = opts.tls
        ? tls.connect({ port, host, servername: "localhost", rejectUnauthorized: false })
        : net.connect(port, host);
      socket.setNoDelay(true);
      socket.once(opts.tls ? "secureConnect" : "connect", () => resolve(new RawClient(socket)));
      socket.once("error", reject);
    });
  }

  send(data: string | Uint8Array): void {
    this.socket.write(data);
  }

  nextId(): string {
    return "r" + (++this.#id);
  }

  /** Waits until an element matching `pred` arrives (consuming it), or fails after `ms`. */
  async waitFor(
    pred: (el: Element) => boolean,
    ms = 5000,
    what = pred.toString(),
  ): Promise<Element> {
    const deadline = Date.now() + ms;
    while (true) {
      const i = this.received.findIndex(pred);
      if (i >= 0) return this.received.splice(i, 1)[0];
      if (this.closed) throw new Error(`stream closed while waiting for ${what}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.#waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  /** Waits until the server closes the stream/connection. */
  async waitClosed(ms = 5000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!this.closed) {
      if (Date.now() > deadline) throw new Error("timed out waiting for the stream to close");
      await new Promise<void>((r) => {
        const t = setTimeout(r, deadline - Date.now());
        this.#waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  streamError(ms = 5000): Promise<Element> {
    return this.waitFor(
      (e) => e.name === "error" && e.attrs.xmlns === NS.streams,
      ms,
      "stream error",
    );
  }

  features(): Promise<Element> {
    return this.waitFor((e) => e.name === "features", 5000, "stream features");
  }

  async open(to = "localhost"): Promise<Element> {
    this.send(HEADER(to));
    return await this.features();
  }

  async starttls(): Promise<void> {
    this.send(`<starttls xmlns='${NS.tls}'/>`);
    await this.waitFor((e) => e.name === "proceed", 5000, "proceed");
    const raw = this.socket;
    raw.removeAllListeners("data");
    raw.removeAllListeners("close");
    const secure = tls.connect({ socket: raw, servername: "localhost", rejectUnauthorized: false });
    await new Promise<void>((r, j) => {
      secure.once("secureConnect", () => r());
      secure.once("error", j);
    });
    this.socket = secure;
    this.#parser.reset();
    this.#listen(secure);
  }

  /** SASL PLAIN; resolves true on success (the stream is then restarted by the caller). */
  async plain(user: string, password: string): Promise<boolean> {
    this.send(
      `<auth xmlns='${NS.sasl}' mechanism='PLAIN'>${
        Buffer.from(`\0${user}\0${password}`).toString("base64")
      }</auth>`,
    );
    const r = await this.waitFor((e) => e.attrs.xmlns === NS.sasl, 10000, "SASL answer");
    if (r.name === "success") this.#parser.reset(); // the server restarts the stream
    return r.name === "success";
  }

  /** SASL SCRAM-SHA-1/256 as a client (RFC 5802), verifying the server's signature. */
  async scram(user: string, password: string, hash: ScramHash = "SHA-256"): Promise<boolean> {
    const scram = new ScramClient(user, password, hash);
    this.send(`<auth xmlns='${NS.sasl}' mechanism='${scram.mechanism}'>${scram.initial}</auth>`);
    const ch = await this.waitFor((e) => e.attrs.xmlns === NS.sasl, 10000, "SASL challenge");
    if (ch.name !== "challenge") return false;
    this.send(`<response xmlns='${NS.sasl}'>${scram.respond(ch.text())}</response>`);
    const r = await this.waitFor((e) => e.attrs.xmlns === NS.sasl, 10000, "SASL outcome");
    if (r.name !== "success") return false;
    scram.verify(r.text());
    this.#parser.reset();
    return true;
  }

  async bind(resource?: string): Promise<string> {
    const id = this.nextId();
    const res = resource ? `<resource>${resource}</resource>` : "";
    this.send(`<iq type='set' id='${id}'><bind xmlns='${NS.bind}'>${res}</bind></iq>`);
    const r = await this.waitFor((e) => e.name === "iq" && e.attrs.id === id, 5000, "bind result");
    if (r.attrs.type !== "result") throw new Error("bind failed: " + r);
    this.jid = r.child("bind")!.childText("jid")!;
    return this.jid;
  }

  /** Full login: optional STARTTLS, SCRAM-SHA-256 (or PLAIN), bind. */
  static async login(
    port: number,
    user: string,
    password = "secret",
    opts: {
      starttls?: boolean;
      mech?: "PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-1";
      resource?: string;
    } = {},
  ): Promise<RawClient> {
    const c = await RawClient.connect(port);
    await c.open();
    if (opts.starttls !== false) {
      await c.starttls();
      await c.open();
    }
    const mech = opts.mech ?? "SCRAM-SHA-256";
    const ok = mech === "PLAIN"
      ? await c.plain(user, password)
      : await c.scram(user, password, mech === "SCRAM-SHA-1" ? "SHA-1" : "SHA-256");
    if (!ok) throw new Error(`login failed for ${user}`);
    await c.open();
    await c.bind(opts.resource);
    return c;
  }

  /** Sends an iq and waits for its answer. */
  async iq(type: "get" | "set", payload: string, to?: string): Promise<Element> {
    const id = this.nextId();
    this.send(`<iq type='${type}' id='${id}'${to ? ` to='${to}'` : ""}>${payload}</iq>`);
    return await this.waitFor(
      (e) => e.name === "iq" && e.attrs.id === id,
      5000,
      `answer to iq ${id}`,
    );
  }

  close(): void {
    if (!this.closed) this.send("</stream:stream>");
    this.socket.end();
    this.socket.destroy();
  }

  /** Drops the TCP connection without closing the stream (a dead client). */
  drop(): void {
    this.socket.destroy();
  }
}

/** Connects as an external component (XEP-0114) and completes the handshake. */
export async function componentLogin(
  port: number,
  domain: string,
  secret: string,
): Promise<RawClient> {
  const c = await RawClient.connect(port);
  c.send(
    `<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='${domain}'>`,
  );
  const deadline = Date.now() + 5000;
  while (!c.streamAttrs) {
    if (c.closed || Date.now() > deadline) throw new Error("no stream header from the server");
    await new Promise((r) => setTimeout(r, 5));
  }
  c.send(
    `<handshake>${createHash("sha1").update(c.streamAttrs.id + secret).digest("hex")}</handshake>`,
  );
  await c.waitFor((e) => e.name === "handshake", 5000, "handshake");
  return c;
}
