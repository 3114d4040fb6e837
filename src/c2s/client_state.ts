// Client State Indication (XEP-0352): a client that says it is <inactive/> (a phone in a pocket)
// is spared what it does not need at once. While inactive, presence from others is held (only
// the newest from each sender: an older one is out of date anyway) and chat states alone are
// dropped; anything else (a message with a body, an iq, a subscription request…) first flushes
// what is held, in the order it came, then goes. <active/> flushes everything. Held stanzas are
// not sent, so stream management does not count them until they are.
import type { Element } from "../xml/element.ts";
import { KEPT_LIMITS, parseStanza } from "../xml/parse_string.ts";
import { NS } from "../xml/ns.ts";

/** What /metrics counts of client state indication (src/metrics). */
export class CsiCounts {
  /** Stanzas held for inactive sessions (a newer presence from the same sender replaces one). */
  held = 0;
  /** Held stanzas a newer presence from their sender made unnecessary. */
  superseded = 0;
  /** Chat-state-only messages not sent to inactive sessions. */
  dropped = 0;
  /** Times what was held was sent (on <active/>, before an urgent stanza, or when full). */
  flushes = 0;
}

export type Verdict = "send" | "hold" | "drop";

/** Presence types that are state (newest wins), not requests a user must see. */
const STATE_PRESENCE = new Set<string | undefined>([undefined, "unavailable"]);
const CHAT_STATES = NS.chatStates;

/** How an inactive session treats a stanza (serialized ones come from other nodes). */
export function verdict(
  stanza: Element | string,
): { verdict: Verdict; from?: string; stanza?: Element } {
  if (typeof stanza === "string") {
    // Serialized on another node (a chat state from a contact there): read only while inactive.
    if (!stanza.startsWith("<message") && !stanza.startsWith("<presence")) {
      return { verdict: "send" };
    }
    const parsed = parseStanza(stanza, KEPT_LIMITS);
    return parsed ? verdict(parsed) : { verdict: "send" };
  }
  if (stanza.name === "presence") {
    if (!STATE_PRESENCE.has(stanza.attrs.type)) return { verdict: "send" };
    // A room's presence about this very user (status 110) is the answer to a join: urgent.
    const user = stanza.child("x", NS.mucUser);
    if (user?.elements("status").some((s) => s.attrs.code === "110")) return { verdict: "send" };
    return { verdict: "hold", from: stanza.attrs.from ?? "", stanza };
  }
  if (stanza.name === "message" && !stanza.child("body")) {
    const children = stanza.elements();
    if (children.length && children.every((c) => c.attrs.xmlns === CHAT_STATES)) {
      return { verdict: "drop" };
    }
  }
  return { verdict: "send" };
}

/** The held stanzas of one inactive session, the newest presence per sender, oldest first. */
export class ClientState {
  inactive = false;
  readonly #held = new Map<string, Element>();

  constructor(readonly counts: CsiCounts, readonly maxHeld: number) {}

  get heldCount(): number {
    return this.#held.size;
  }

  /**
   * Whether `stanza` goes out now: false when it was held or dropped. Before a stanza that goes
   * out, `flush` gets what was held (the caller writes them first).
   */
  admit(stanza: Element | string, flush: (held: Element[]) => void): boolean {
    if (!this.inactive) return true;
    const v = verdict(stanza);
    if (v.verdict === "drop") {
      this.counts.dropped++;
      return false;
    }
    if (v.verdict === "hold") {
      const from = v.from!;
      // Kept in arrival order of each sender's newest.
      if (this.#held.delete(from)) this.counts.superseded++;
      this.#held.set(from, v.stanza!);
      this.counts.held++;
      if (this.#held.size > this.maxHeld) flush(this.take());
      return false;
    }
    if (this.#held.size) flush(this.take());
    return true;
  }

  /** Everything held, oldest first; nothing is held after. */
  take(): Element[] {
    if (this.#held.size === 0) return [];
    this.counts.flushes++;
    const held = [...this.#held.values()];
    this.#held.clear();
    return held;
  }
}
