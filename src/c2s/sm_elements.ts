// The elements of XEP-0198 stream management a client sends after authenticating: <enable/>,
// <resume/>, <r/> and <a/>, answered on its stream with <enabled/>, <resumed/>, <failed/> and
// <a/>, or the stream errors the XEP specifies.
import { type Element, x } from "../xml/element.ts";
import { NS } from "../xml/ns.ts";
import type { StreamErrorCondition } from "../stream/stream_error.ts";
import type { ClientSession, SessionStream } from "./client_session.ts";
import type { Resumption } from "./resumption.ts";

/** What the c2s stream offers the handling of these elements. */
export interface SmStream extends SessionStream {
  readonly session: ClientSession | undefined;
  /** The account the stream authenticated as. */
  readonly bare: string;
  readonly startedAt: number;
  readonly closed: boolean;
  readonly deps: { readonly resumption: Resumption };
  /** Resent stanzas are checked for duplicates until a new one comes. */
  dedupe: boolean;
  resuming: boolean;
  error(condition: StreamErrorCondition, text?: string, extra?: Element): void;
  /** A resumption attached the stream to `session`. */
  resumed(session: ClientSession): void;
}

const MAX_COUNTER = 2 ** 32 - 1;
/** How long a resumption waits for the count of what the client sent to be stored. */
const COUNTING_WAIT_MS = 5000;
/** Most stanzas written before <enabled/> a client's first count may include. */
const LEEWAY = 32;

export function smElement(stream: SmStream, el: Element): void {
  const sm = stream.session?.sm;
  switch (el.name) {
    case "r":
      if (!sm) return failed(stream, "unexpected-request");
      return stream.send(`<a xmlns='urn:xmpp:sm:3' h='${sm.handled}'/>`);
    case "a": {
      if (!sm) return failed(stream, "unexpected-request");
      const h = counter(el.attrs.h);
      if (h === undefined) return stream.error("bad-format", "<a/> without a valid h");
      const acknowledged = sm.acknowledge(h);
      if (acknowledged === "too-high") return tooHigh(stream, h, sm.sent);
      if (acknowledged === "stale") return;
      // What went out after the request this answers is asked for with the next stanzas: asked
      // now, a client that counts short (some skip replies to their own iq requests) would be
      // asked again and again.
      sm.requested = false;
      if (sm.resumable) stream.deps.resumption.changed(stream.session!);
      return;
    }
    case "enable":
      return enable(stream, el);
    case "resume":
      return void resume(stream, el).catch((e) => {
        stream.error("internal-server-error", `resumption failed: ${e}`);
      });
    default:
      return stream.error("unsupported-stanza-type", `<${el.name}/>`);
  }
}

function enable(stream: SmStream, el: Element): void {
  const session = stream.session;
  // Only a bound resource, and only once (XEP-0198 §3).
  if (!session || session.sm || stream.resuming) return failed(stream, "unexpected-request");
  const resume = el.attrs.resume === "true" || el.attrs.resume === "1";
  const asked = counter(el.attrs.max);
  const sm = stream.deps.resumption.enable(session, resume, asked || undefined);
  sm.leeway = Math.min(session.deliveredBeforeEnable, LEEWAY);
  stream.send(x("enabled", {
    xmlns: NS.sm,
    id: sm.id ?? undefined,
    resume: resume ? "true" : undefined,
    max: resume ? String(Math.floor(sm.timeoutMs / 1000)) : undefined,
  }));
}

async function resume(stream: SmStream, el: Element): Promise<void> {
  if (stream.session || stream.resuming) return failed(stream, "unexpected-request");
  // Resuming until it is decided: a <bind/> or another <resume/> meanwhile is refused.
  stream.resuming = true;
  try {
    await resumeSession(stream, el);
  } finally {
    stream.resuming = false;
  }
}

async function resumeSession(stream: SmStream, el: Element): Promise<void> {
  const previd = el.attrs.previd;
  const h = counter(el.attrs.h);
  if (!previd || h === undefined) return failed(stream, "bad-request");
  const resumption = stream.deps.resumption;
  // Held here: resumed in this very tick, before another node may take it.
  let session = resumption.here(previd, stream.bare, stream.startedAt);
  session ??= await resumption.elsewhere(previd, stream.bare, stream.startedAt);
  // What the client sent before is counted in <resumed h/> (a few stored archive entries away),
  // for a while: a store that does not answer leaves it to the resends' dedupe.
  const counting = session?.counting;
  if (counting) {
    await Promise.race([counting, new Promise((r) => setTimeout(r, COUNTING_WAIT_MS))]);
  }
  const uncounted = session?.counting !== undefined;
  // Gone meanwhile: a session brought here stays detached, to be resumed again or time out.
  if (stream.closed) return;
  // Another stream may have resumed it while this one waited.
  if (!session?.live || session.resumedAt >= stream.startedAt) {
    return failed(stream, "item-not-found");
  }
  const adopted = session.adopted;
  const resend = session.resume(stream, h);
  if (resend === null) return tooHigh(stream, h, session.sm!.sent);
  session.adopted = false;
  stream.resumed(session);
  stream.send(x("resumed", { xmlns: NS.sm, previd, h: String(session.sm!.handled) }));
  for (const xml of resend) stream.send(xml);
  // Only a replica's count, or one still waiting for the store, may lag what was handled.
  stream.dedupe = adopted || uncounted;
}

function failed(stream: SmStream, condition: string): void {
  stream.send(x("failed", { xmlns: NS.sm }, x(condition, { xmlns: NS.stanzaErrors })));
}

/** The client acknowledged more than it was sent (XEP-0198 §4). */
function tooHigh(stream: SmStream, h: number, sent: number): void {
  stream.error(
    "undefined-condition",
    `acknowledged ${h} stanzas, ${sent} were sent`,
    x("handled-count-too-high", { xmlns: NS.sm, h: String(h), "send-count": String(sent) }),
  );
}

/** An unsigned 32-bit counter as XEP-0198 writes it; undefined when it is not one. */
function counter(text: string | undefined): number | undefined {
  if (text === undefined || !/^\d{1,10}$/.test(text)) return undefined;
  const n = Number(text);
  return n <= MAX_COUNTER ? n : undefined;
}
