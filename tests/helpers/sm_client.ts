// Stream management (XEP-0198) over a RawClient: logging in with or without binding a resource,
// enabling and resuming, and the count a client acknowledges (stanzas received since <enabled/>
// or since <resumed/>, starting from the h it resumed with). Every element received is also kept
// in `log`, in arrival order and never consumed, so a test can check the order of what came.
import assert from "node:assert/strict";
import { RawClient } from "./raw_client.ts";
import type { Element } from "../../src/xml/element.ts";
import { NS } from "../../src/xml/ns.ts";

export const SM = "urn:xmpp:sm:3";

const STANZA_NAMES = new Set(["message", "presence", "iq"]);

/** A stanza as XEP-0198 counts it: message, presence or iq of the stream's content namespace. */
export const isStanza = (e: Element): boolean =>
  STANZA_NAMES.has(e.name) && e.attrs.xmlns === undefined;

/** A stream management element (`<enabled/>`, `<r/>`, `<a/>`, …) by name. */
export const isSm = (name: string) => (e: Element): boolean =>
  e.name === name && e.attrs.xmlns === SM;

/** The outcome of `<enable/>` or `<resume/>`: the success element named, or `<failed/>`. */
const smOutcome = (success: string) => (e: Element): boolean =>
  e.attrs.xmlns === SM && (e.name === success || e.name === "failed");

/** The stanza-error condition inside a `<failed/>`, e.g. "item-not-found". */
export function failedCondition(failed: Element): string | undefined {
  assert.equal(failed.name, "failed", `expected <failed/>, got ${failed}`);
  return failed.elements().find((c) => c.attrs.xmlns === NS.stanzaErrors)?.name;
}

export const presence = (type: string | undefined, from?: string) => (e: Element): boolean =>
  e.name === "presence" && e.attrs.xmlns === undefined && e.attrs.type === type &&
  (from === undefined || e.attrs.from === from);

export const messageWithBody = (body: string) => (e: Element): boolean =>
  e.name === "message" && e.attrs.xmlns === undefined && e.childText("body") === body;

/** The bodies of the messages among `els`, in order. */
export const bodies = (els: Element[]): string[] =>
  els.filter((e) => e.name === "message" && e.attrs.xmlns === undefined)
    .map((e) => e.childText("body") ?? "");

export const bareOf = (jid: string): string => jid.split("/")[0];

export class SmClient {
  /** Every element received, in arrival order, never consumed by waitFor. */
  readonly log: Element[] = [];
  /** Features of the stream before authentication, and after it. */
  featuresBeforeAuth: Element | undefined;
  features: Element | undefined;
  /** Stanzas received since <enabled/> (or since <resumed/>, from the h resumed with). */
  inbound = 0;
  /** Answer every <r/> of the server with <a h='inbound'/> as it arrives. */
  autoAck = false;
  jid = "";
  #counting = false;

  private constructor(readonly raw: RawClient) {
    // RawClient pushes each element it parses into `received`; see them all as they come.
    const received = raw.received;
    received.push = (...els: Element[]): number => {
      for (const e of els) this.#saw(e);
      return Array.prototype.push.apply(received, els);
    };
  }

  #saw(e: Element): void {
    this.log.push(e);
    if (isSm("enabled")(e) || isSm("resumed")(e)) {
      if (isSm("enabled")(e)) this.inbound = 0;
      this.#counting = true;
    } else if (this.#counting && isStanza(e)) {
      this.inbound++;
    } else if (this.autoAck && isSm("r")(e)) {
      this.raw.send(`<a xmlns='${SM}' h='${this.inbound}'/>`);
    }
  }

  /** Connects, optionally STARTTLS, authenticates with SCRAM-SHA-256 and restarts the stream. */
  static async auth(
    port: number,
    user: string,
    opts: { password?: string; starttls?: boolean } = {},
  ): Promise<SmClient> {
    const c = new SmClient(await RawClient.connect(port));
    c.featuresBeforeAuth = await c.raw.open();
    if (opts.starttls) {
      await c.raw.starttls();
      c.featuresBeforeAuth = await c.raw.open();
    }
    if (!await c.raw.scram(user, opts.password ?? "secret")) {
      throw new Error(`login failed for ${user}`);
    }
    c.features = await c.raw.open();
    return c;
  }

  /** auth() and resource binding. */
  static async login(
    port: number,
    user: string,
    opts: { password?: string; starttls?: boolean; resource?: string } = {},
  ): Promise<SmClient> {
    const c = await SmClient.auth(port, user, opts);
    await c.bind(opts.resource);
    return c;
  }

  async bind(resource?: string): Promise<string> {
    this.jid = await this.raw.bind(resource);
    return this.jid;
  }

  get closed(): boolean {
    return this.raw.closed;
  }

  send(data: string): void {
    this.raw.send(data);
  }

  waitFor(pred: (e: Element) => boolean, ms = 5000, what = pred.toString()): Promise<Element> {
    return this.raw.waitFor(pred, ms, what);
  }

  /** Sends `<enable/>` with these attributes; resolves with `<enabled/>` or `<failed/>`. */
  enable(attrs: Record<string, string> = {}): Promise<Element> {
    const a = Object.entries(attrs).map(([k, v]) => ` ${k}='${v}'`).join("");
    this.send(`<enable xmlns='${SM}'${a}/>`);
    return this.waitFor(smOutcome("enabled"), 5000, "<enabled/> or <failed/>");
  }

  /** enable({resume: "true"}) that must succeed; returns the resumption id. */
  async enableResume(): Promise<string> {
    const enabled = await this.enable({ resume: "true" });
    assert.equal(enabled.name, "enabled", `enable refused: ${enabled}`);
    assert.ok(enabled.attrs.id, `no id in ${enabled}`);
    return enabled.attrs.id!;
  }

  /**
   * Sends `<resume previd h/>`; resolves with `<resumed/>` or `<failed/>`. The count of stanzas
   * received goes on from `h`, as a client's does.
   */
  resume(previd: string, h: number): Promise<Element> {
    this.inbound = h;
    this.send(`<resume xmlns='${SM}' previd='${previd}' h='${h}'/>`);
    return this.waitFor(smOutcome("resumed"), 5000, "<resumed/> or <failed/>");
  }

  /** Sends `<r/>` and returns the h of the server's `<a/>`. */
  async requestAck(): Promise<number> {
    this.send(`<r xmlns='${SM}'/>`);
    const a = await this.waitFor(isSm("a"), 5000, "<a/>");
    const h = Number(a.attrs.h);
    assert.ok(Number.isInteger(h), `h of ${a}`);
    return h;
  }

  /** Sends an iq and waits for its answer. */
  iq(type: "get" | "set", payload: string, to?: string): Promise<Element> {
    return this.raw.iq(type, payload, to);
  }

  /** A ping round trip to the server: everything sent before has been handled. */
  async sync(): Promise<void> {
    const r = await this.iq("get", `<ping xmlns='${NS.ping}'/>`, "localhost");
    assert.equal(r.attrs.type, "result", `ping answered ${r}`);
  }

  /** Sends a message with this body. */
  message(to: string, body: string, type: string | undefined = "chat", id?: string): void {
    const t = type === undefined ? "" : ` type='${type}'`;
    this.send(`<message to='${to}'${t}${id ? ` id='${id}'` : ""}><body>${body}</body></message>`);
  }

  /** The stream errors received so far. */
  streamErrors(): Element[] {
    return this.log.filter((e) => e.name === "error" && e.attrs.xmlns === NS.streams);
  }

  streamError(ms = 5000): Promise<Element> {
    return this.raw.streamError(ms);
  }

  waitClosed(ms = 5000): Promise<void> {
    return this.raw.waitClosed(ms);
  }

  /** Closes the stream with `</stream:stream>` and leaves the socket open to read the answer. */
  endStream(): void {
    this.send("</stream:stream>");
  }

  /** Drops the TCP connection without closing the stream (a client that lost its network). */
  drop(): void {
    this.raw.drop();
  }

  close(): void {
    this.raw.close();
  }
}

/**
 * Makes two bound sessions available and each subscribed to the other's presence; resolves once
 * each has seen the other's presence.
 */
export async function befriend(a: SmClient, b: SmClient): Promise<void> {
  const aBare = bareOf(a.jid), bBare = bareOf(b.jid);
  a.send("<presence/>");
  b.send("<presence/>");
  a.send(`<presence to='${bBare}' type='subscribe'/>`);
  await b.waitFor(presence("subscribe", aBare));
  b.send(`<presence to='${aBare}' type='subscribed'/>`);
  await a.waitFor(presence(undefined, b.jid));
  b.send(`<presence to='${aBare}' type='subscribe'/>`);
  await a.waitFor(presence("subscribe", bBare));
  a.send(`<presence to='${bBare}' type='subscribed'/>`);
  await b.waitFor(presence(undefined, a.jid));
}
