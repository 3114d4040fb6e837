// An XML stream over a WebSocket (RFC 7395, subprotocol "xmpp"). Each message holds one element:
// the client's <open/> and <close/> (urn:ietf:params:xml:ns:xmpp-framing) become a stream header
// and end for the stream parser, everything else is parsed as it comes; each element the server
// sends goes out as one message, with the namespace declarations a standalone element needs.
//
// A WebSocket cannot stop reading: while the stream is paused (rate limiting) messages are held
// here, and a client sending more than `maxHeld` bytes meanwhile gets policy-violation. Output
// the client does not read is measured by bufferedAmount, checked until it drains.
import { escapeAttr } from "../xml/escape.ts";
import { NS } from "../xml/ns.ts";
import { parseStanza } from "../xml/parse_string.ts";
import type { Transport, TransportEvents } from "../stream/transport.ts";
import { HeldInput } from "./held_input.ts";
import { standalone } from "./framing.ts";

const NS_FRAMING = "urn:ietf:params:xml:ns:xmpp-framing";
/** Largest <open/> read (it has a few short attributes). */
const OPEN_MAX = 4096;
/** How often output waiting for a slow reader is checked. */
const DRAIN_CHECK_MS = 50;

export class WsTransport implements Transport {
  readonly kind = "websocket";
  readonly closing = `<close xmlns='${NS_FRAMING}'/>`;
  #events: TransportEvents | undefined;
  #input: HeldInput;
  #drainCheck: ReturnType<typeof setInterval> | undefined;
  #closed = false;

  constructor(
    readonly ws: WebSocket,
    readonly remote: string,
    /** Bytes of messages held while paused before the client is refused. */
    readonly maxHeld: number,
    /** Bytes the client may leave unread before `write` says so. */
    readonly highWater: number,
    /** The longest message: one stanza (RFC 7395: one element per message). */
    readonly maxMessage: number,
  ) {
    this.#input = new HeldInput(maxHeld, () => this.#events!);
  }

  get destroyed(): boolean {
    return this.#closed;
  }

  get queuedBytes(): number {
    return this.ws.bufferedAmount;
  }

  header(_contentNs: string, attrs: string): string {
    return `<open xmlns='${NS_FRAMING}'${attrs}/>`;
  }

  attach(events: TransportEvents): void {
    this.#events = events;
    this.ws.onmessage = (e) => this.#message(e.data);
    this.ws.onclose = () => this.#gone();
    this.ws.onerror = () => this.#gone();
  }

  #message(data: unknown): void {
    if (this.#closed) return;
    if (typeof data !== "string") {
      return this.#events!.refuse("unsupported-encoding", "XMPP over WebSocket is text");
    }
    // One element per message: a longer one is no stanza this server takes. (Deno has read it
    // whole already, up to 64 MiB: that much is not guaranteed.)
    if (data.length > this.maxMessage + OPEN_MAX) {
      return this.#events!.refuse("policy-violation", "a message longer than one stanza");
    }
    this.#input.pass(this.#framed(data));
  }

  /** The client's framing as the stream parser reads it: <open/> a header, <close/> its end. */
  #framed(text: string): string {
    const t = text.trimStart();
    if (!t.startsWith("<open") && !t.startsWith("<close")) return text;
    const el = t.length <= OPEN_MAX
      ? parseStanza(t, { maxStanzaSize: OPEN_MAX, maxDepth: 1 })
      : null;
    // Not framing after all: the parser reads it, and refuses what it must.
    if (!el || (el.name !== "open" && el.name !== "close")) return text;
    if (el.name === "close") return "</stream:stream>";
    // A wrong framing namespace shows as the stream's: invalid-namespace, as on TCP.
    const ns = el.attrs.xmlns === NS_FRAMING ? NS.client : el.attrs.xmlns ?? "";
    let header = `<stream:stream xmlns='${escapeAttr(ns)}' xmlns:stream='${NS.streams}'`;
    for (const [k, v] of Object.entries(el.attrs)) {
      if (k !== "xmlns" && v !== undefined) header += ` ${k}='${escapeAttr(v)}'`;
    }
    return header + ">";
  }

  write(items: string[]): boolean {
    if (this.#closed || this.ws.readyState !== WebSocket.OPEN) return true;
    for (const item of items) this.ws.send(standalone(item));
    if (this.ws.bufferedAmount <= this.highWater) return true;
    this.#drainCheck ??= setInterval(() => {
      if (this.ws.bufferedAmount > this.highWater && !this.#closed) return;
      clearInterval(this.#drainCheck);
      this.#drainCheck = undefined;
      if (!this.#closed) this.#events!.drain();
    }, DRAIN_CHECK_MS);
    return false;
  }

  pause(): void {
    this.#input.pause();
  }

  resume(): void {
    this.#input.resume(() => this.#closed);
  }

  end(): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.close(1000);
  }

  destroy(): void {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) {
      this.ws.close(1000);
    }
    this.#gone();
  }

  #gone(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#drainCheck);
    this.#input.clear();
    this.#events?.close();
  }
}
