// One BOSH session (XEP-0124) as the transport of a client stream (XEP-0206). Requests carry
// sequential rids; their payloads reach the stream parser in rid order (one out of order waits
// for the gap to fill), behind a stream header made from the session's attributes, again on
// xmpp:restart='true'; type='terminate' ends the stream. What the stream writes waits here and
// goes out in the <body/> of the oldest request held: at once when there is some, else empty
// after `wait` seconds, and at once when more than `hold` requests are held. The server's stream
// header is no element: its id and from go into the session creation response (authid, from),
// and its close makes the response type='terminate', with condition='remote-stream-error' and
// the <stream:error/> inside when there was one. When the stream closes while no request is
// held, that response is `unsent` once the session is gone, for bosh.ts to give the next request.
//
// Terminal binding conditions (XEP-0124 §17.2) end the session: a rid beyond the window, or a
// repeated one whose response is no longer kept (item-not-found); more unanswered requests than
// `requests`, two empty polls (hold 0) within `polling` seconds, more than `maxRate` requests a
// second (policy-violation). No request held for `inactivity` seconds ends it too. Bounded: the
// output the client does not fetch (the stream drops it past limits.max_outbound_buffer), input
// held while the stream is rate limited (`maxHeld`), the responses kept for repeats (`requests`),
// the response to the stream's close that no request took (`maxKept`).
import { escapeAttr } from "../xml/escape.ts";
import type { Attrs } from "../xml/element.ts";
import { NS } from "../xml/ns.ts";
import { TokenBucket } from "../core/token_bucket.ts";
import type { Transport, TransportEvents } from "../stream/transport.ts";
import { HeldInput } from "./held_input.ts";
import { standalone } from "./framing.ts";

export const NS_HTTPBIND = "http://jabber.org/protocol/httpbind";
export const NS_XBOSH = "urn:xmpp:xbosh";
const CLOSING = "</stream:stream>";
/** What a request superseded by a repeat of its rid gets: recoverable, send it again (§17.3). */
const SUPERSEDED = `<body type='error' xmlns='${NS_HTTPBIND}'/>`;

/** A <body/> of the session's responses: `attrs` is attribute text (` name='value'`…). */
function bodyXml(attrs: string, payloads = ""): string {
  const open = `<body xmlns='${NS_HTTPBIND}'${attrs}`;
  return payloads === "" ? open + "/>" : `${open}>${payloads}</body>`;
}

/** A terminal binding condition (XEP-0124 §17.2): the session is over. */
export function terminal(condition: string): string {
  return bodyXml(` type='terminate' condition='${condition}'`);
}

/** An attribute in the xbosh namespace (XEP-0206: xmpp:version, xmpp:restart), whatever prefix. */
export function xbosh(attrs: Attrs, local: string): string | undefined {
  for (const name in attrs) {
    const colon = name.indexOf(":");
    if (colon > 0 && name.slice(colon + 1) === local) {
      const prefix = name.slice(0, colon);
      if (prefix !== "xmlns" && attrs[`xmlns:${prefix}`] === NS_XBOSH) return attrs[name];
    }
  }
  return undefined;
}

/** A request of a session: its rid, the attributes of its <body/>, and what the <body/> holds. */
export interface BoshRequest {
  rid: number;
  attrs: Attrs;
  payload: string;
}

export interface BoshSettings {
  /** Seconds a request is held at most, and requests held at once, as agreed with the client. */
  wait: number;
  hold: number;
  /** Seconds without a request held before the session ends. */
  inactivity: number;
  /** Shortest interval, in seconds, between empty requests of a polling session (hold 0). */
  polling: number;
  /** Requests a second this session may make. */
  maxRate: number;
  /** Input bytes held while the stream is rate limited before the client is refused. */
  maxHeld: number;
  /** Output bytes waiting for a request before `write` says the client reads slowly. */
  highWater: number;
  /** The session creation response's attributes but those the stream gives (authid, from). */
  created: string;
  /** Characters of the response to the stream's close kept for a later request: past this, the
   * <stream:error/> alone. */
  maxKept: number;
}

interface Entry {
  rid: number;
  /** The connection waiting for this rid's response (a repeat of the rid takes it over). */
  resolve?: (body: string) => void;
  /** A request come out of order, kept until the rids before it have come. */
  request?: BoshRequest;
  timer?: ReturnType<typeof setTimeout>;
  /** Processed at (ms); empty and neither a restart nor a terminate: a poll. */
  at?: number;
  poll?: boolean;
  /** Its response carried payloads (set once answered). */
  data?: boolean;
}

export class BoshTransport implements Transport {
  readonly kind = "bosh";
  readonly closing = CLOSING;
  /** Unanswered requests the client may have (hold + 1, XEP-0124 §7.2). */
  readonly requests: number;
  #events: TransportEvents | undefined;
  #input: HeldInput;
  #rate: TokenBucket;
  /** The rid of the request processed last, and of the session creation request. */
  #lastRid = 0;
  #firstRid = 0;
  /** The stream header's attributes as the session was created: to, xml:lang, version. */
  #stream: Attrs = {};
  /** The stream's id and from, as attribute text of the creation response. */
  #streamAttrs = "";
  /** Requests processed and not yet answered, in rid order; requests waiting for a gap. */
  #held: Entry[] = [];
  #early = new Map<number, Entry>();
  /** Responses kept for repeated rids, the last `requests` ones. */
  #answered = new Map<number, string>();
  #last: Entry | undefined;
  #out: string[] = [];
  #outBytes = 0;
  #waitingDrain = false;
  /** A request's payloads are being fed: what they cause goes on the oldest request held. */
  #processing = false;
  /** The stream is closed: the next response is type='terminate' (with this condition). */
  #ending = false;
  #condition: string | undefined;
  /** The <stream:error/> written, as sent. */
  #streamError = "";
  /** A request took the response to the stream's close. */
  #finished = false;
  #unsent: string | undefined;
  #inactive: ReturnType<typeof setTimeout> | undefined;
  #gone = false;

  constructor(
    readonly sid: string,
    readonly remote: string,
    readonly settings: BoshSettings,
    /** The Content-Type of the session's responses (the client's `content`, XEP-0124 §7.1). */
    readonly contentType: string,
  ) {
    this.requests = settings.hold + 1;
    this.#rate = new TokenBucket(settings.maxRate, settings.maxRate);
    this.#input = new HeldInput(settings.maxHeld, () => this.#events!);
  }

  get destroyed(): boolean {
    return this.#gone;
  }

  get queuedBytes(): number {
    return this.#outBytes;
  }

  /** The response to the stream's close when no request took it: the stream closed while none
   * was held, and the session is gone. */
  get unsent(): string | undefined {
    return this.#unsent;
  }

  /** Requests waiting for their response: held, or come before their turn. */
  get pending(): number {
    return this.#held.length + this.#early.size;
  }

  /** The server's header is not sent: its id and from go into the session creation response. */
  header(_contentNs: string, attrs: string): string {
    if (!this.#streamAttrs) {
      for (const m of attrs.matchAll(/ (id|from)='([^']*)'/g)) {
        this.#streamAttrs += ` ${m[1] === "id" ? "authid" : "from"}='${m[2]}'`;
      }
    }
    return "";
  }

  attach(events: TransportEvents): void {
    this.#events = events;
  }

  /** The session creation request: its attributes make the stream header. */
  open(req: BoshRequest): Promise<string> | string {
    const a = req.attrs;
    this.#stream = { to: a.to, "xml:lang": a["xml:lang"], version: xbosh(a, "version") };
    this.#firstRid = req.rid;
    this.#lastRid = req.rid - 1;
    return this.handle(req);
  }

  /** Answers a request of this session: the <body/> to return, now or once it is due. */
  handle(req: BoshRequest): Promise<string> | string {
    if (this.#gone) return terminal("item-not-found");
    if (!this.#rate.take()) return this.fail("policy-violation");
    if (this.#ending) return this.#finish();
    const { rid } = req;
    if (rid <= this.#lastRid) return this.#repeat(rid);
    if (rid > this.#lastRid + this.requests) return this.fail("item-not-found");
    const early = this.#early.get(rid);
    if (early) return this.#waitFor(early);
    // A pause or terminate may come beyond `requests` (XEP-0124 §11); pause is not offered.
    const unanswered = this.#held.length + this.#early.size;
    const overactive = unanswered >= this.requests && req.attrs.type !== "terminate";
    if (overactive || this.#pollsTooOften(req)) return this.fail("policy-violation");
    const entry: Entry = { rid };
    const answer = this.#waitFor(entry);
    if (rid > this.#lastRid + 1) {
      entry.request = req;
      this.#early.set(rid, entry);
    } else {
      this.#process(entry, req);
      for (let next; !this.#gone && (next = this.#early.get(this.#lastRid + 1));) {
        this.#early.delete(next.rid);
        this.#process(next, next.request!);
        next.request = undefined;
      }
    }
    this.#idle();
    return answer;
  }

  /** Ends the session with a terminal binding condition: the body for the request causing it. */
  fail(condition: string): string {
    const body = terminal(condition);
    this.#destroyWith(body);
    return body;
  }

  /** A rid already processed: its response again while it is kept (XEP-0124 §14.3). */
  #repeat(rid: number): Promise<string> | string {
    const kept = this.#answered.get(rid);
    if (kept !== undefined) return kept;
    const held = this.#held.find((e) => e.rid === rid);
    return held ? this.#waitFor(held) : this.fail("item-not-found");
  }

  #waitFor(entry: Entry): Promise<string> {
    entry.resolve?.(SUPERSEDED);
    return new Promise((resolve) => entry.resolve = resolve);
  }

  /** Polling session rule (XEP-0124 §12): two empty polls, the first answered empty, too close. */
  #pollsTooOften(req: BoshRequest): boolean {
    const last = this.#last;
    return this.settings.hold === 0 && req.rid === this.#lastRid + 1 && isPoll(req) &&
      !!last?.poll && last.data === false &&
      Date.now() - last.at! < this.settings.polling * 1000;
  }

  #process(entry: Entry, req: BoshRequest): void {
    this.#lastRid = entry.rid;
    this.#last = entry;
    entry.at = Date.now();
    entry.poll = isPoll(req);
    this.#held.push(entry);
    entry.timer = setTimeout(() => this.#answerThrough(entry), this.settings.wait * 1000);
    this.#processing = true;
    if (entry.rid === this.#firstRid || xbosh(req.attrs, "restart") === "true") {
      this.#feed(this.#header(req.attrs));
    }
    // Even an empty request is activity: the stream's idle checks see the client is there.
    this.#feed(req.payload);
    if (req.attrs.type === "terminate") this.#feed(CLOSING);
    // The stream writes what the payloads caused at the end of this task: it goes on the oldest
    // request held, and this one waits for what comes next.
    queueMicrotask(() => {
      this.#processing = false;
      this.#pump();
    });
  }

  /** The stream header the parser reads: the creation request's attributes, or a restart's. */
  #header(attrs: Attrs): string {
    const s = this.#stream;
    const values: [string, string | undefined][] = [
      ["to", attrs.to ?? s.to],
      ["xml:lang", attrs["xml:lang"] ?? s["xml:lang"]],
      ["version", s.version],
    ];
    let header = `<stream:stream xmlns='${NS.client}' xmlns:stream='${NS.streams}'`;
    for (const [k, v] of values) if (v !== undefined) header += ` ${k}='${escapeAttr(v)}'`;
    return header + ">";
  }

  #feed(text: string): void {
    if (!this.#gone) this.#input.pass(text);
  }

  write(items: string[]): boolean {
    if (this.#gone) return true;
    for (const item of items) {
      if (item === CLOSING) this.#ending = true;
      else if (item !== "") {
        const out = standalone(item);
        if (item.startsWith("<stream:error")) {
          this.#condition = "remote-stream-error";
          this.#streamError = out;
        }
        this.#out.push(out);
        this.#outBytes += out.length;
      }
    }
    if (this.#ending) queueMicrotask(() => this.#pump());
    else this.#pump();
    if (this.#outBytes <= this.settings.highWater) return true;
    this.#waitingDrain = true;
    return false;
  }

  /** Answers what is due: all when the stream is over, else the oldest held while there is data
   * for it or more than `hold` are held. */
  #pump(): void {
    if (this.#gone) return;
    if (this.#ending) {
      if (this.#held.length > 0) this.#finish();
      return;
    }
    if (this.#processing) return;
    const held = this.#held;
    while (held.length > this.settings.hold || (held.length > 0 && this.#out.length > 0)) {
      this.#respond(held.shift());
    }
    this.#idle();
  }

  /** `wait` is over for `entry`: it is answered, and any held before it. */
  #answerThrough(entry: Entry): void {
    const i = this.#held.indexOf(entry);
    if (i < 0 || this.#gone) return;
    for (const e of this.#held.splice(0, i + 1)) this.#respond(e);
    this.#idle();
  }

  /** The response to `entry` (none: to a request that came after the stream closed). */
  #respond(entry: Entry | undefined, type = ""): string {
    const payloads = this.#out.join("");
    this.#out = [];
    this.#outBytes = 0;
    const created = entry?.rid === this.#firstRid
      ? this.settings.created + this.#streamAttrs + ` xmlns:stream='${NS.streams}'`
      : "";
    const body = bodyXml(created + type, payloads);
    if (entry) {
      clearTimeout(entry.timer);
      entry.data = payloads !== "";
      this.#answered.set(entry.rid, body);
      if (this.#answered.size > this.requests) {
        this.#answered.delete(this.#answered.keys().next().value!);
      }
      entry.resolve?.(body);
    }
    if (this.#waitingDrain) {
      this.#waitingDrain = false;
      queueMicrotask(() => this.#gone || this.#events!.drain());
    }
    return body;
  }

  /** The stream is closed: the oldest request held (or the one just come) gets what is left and
   * type='terminate', any other the terminate alone; then the session is gone. */
  #finish(): string {
    this.#finished = true;
    const body = this.#respond(this.#held.shift(), this.#terminate());
    this.#destroyWith(bodyXml(this.#terminate()));
    return body;
  }

  /** The attributes of the response to the stream's close. */
  #terminate(): string {
    return ` type='terminate'${this.#condition ? ` condition='${this.#condition}'` : ""}`;
  }

  /** The response to the stream's close for a request to come: with what is left, or with the
   * <stream:error/> alone when that is more than `maxKept`. */
  #final(): string {
    const body = this.#respond(undefined, this.#terminate());
    return body.length <= this.settings.maxKept
      ? body
      : bodyXml(this.#terminate(), this.#streamError);
  }

  /** Starts counting inactivity once no request is held (XEP-0124 §10); stops when one is. */
  #idle(): void {
    if (this.#gone) return;
    if (this.#held.length > 0) {
      clearTimeout(this.#inactive);
      this.#inactive = undefined;
    } else {
      this.#inactive ??= setTimeout(
        () => this.#destroyWith(terminal("item-not-found")),
        this.settings.inactivity * 1000,
      );
    }
  }

  pause(): void {
    this.#input.pause();
  }

  resume(): void {
    this.#input.resume(() => this.#gone);
  }

  /** The stream closed: answered now if a request is held, else by the next (or at destroy). */
  end(): void {
    this.#ending = true;
    queueMicrotask(() => this.#pump());
  }

  destroy(): void {
    this.#destroyWith(
      this.#ending ? bodyXml(this.#terminate()) : terminal("remote-connection-failed"),
    );
  }

  /** The session is over: every request still waiting gets `body`. */
  #destroyWith(body: string): void {
    if (this.#gone) return;
    if (this.#ending && !this.#finished) this.#unsent = this.#final();
    this.#gone = true;
    clearTimeout(this.#inactive);
    for (const e of [...this.#held, ...this.#early.values()]) {
      clearTimeout(e.timer);
      e.resolve?.(body);
    }
    this.#held = [];
    this.#early.clear();
    this.#answered.clear();
    this.#out = [];
    this.#input.clear();
    this.#events?.close();
  }
}

function isPoll(req: BoshRequest): boolean {
  return req.payload.trim() === "" && req.attrs.type !== "terminate" &&
    xbosh(req.attrs, "restart") !== "true";
}
