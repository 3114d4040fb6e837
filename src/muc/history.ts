// Room history (XEP-0045 §7.2.15): the last messages, each kept with its delay stamp (XEP-0203)
// already attached, so a join only re-addresses them. Joiners filter with <history/>.
import { Element, x } from "../xml/element.ts";
import { NS } from "../xml/ns.ts";

/** One kept message (with its delay stamp) and when it was sent. */
export interface HistoryEntry {
  stanza: Element;
  at: number;
}

interface Entry extends HistoryEntry {
  chars: number;
}

export interface HistoryRequest {
  maxStanzas?: number;
  maxChars?: number;
  seconds?: number;
  since?: number;
}

function nonNegative(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  return Number.isInteger(n) && n >= 0 ? n : undefined;
}

/** Reads the <history/> element of a join (§7.2.15); absent values mean no limit. */
export function historyRequest(history: Element | undefined): HistoryRequest {
  if (!history) return {};
  const since = history.attrs.since ? Date.parse(history.attrs.since) : NaN;
  return {
    maxStanzas: nonNegative(history.attrs.maxstanzas),
    maxChars: nonNegative(history.attrs.maxchars),
    seconds: nonNegative(history.attrs.seconds),
    since: Number.isNaN(since) ? undefined : since,
  };
}

export class RoomHistory {
  #entries: Entry[] = [];

  constructor(readonly roomJid: string, public length: number) {}

  add(message: Element, now = Date.now()): void {
    if (this.length === 0) return;
    const stamp = x("delay", {
      xmlns: NS.delay,
      from: this.roomJid,
      stamp: new Date(now).toISOString(),
    });
    const stanza = new Element(message.name, { ...message.attrs }, [...message.children, stamp]);
    this.#entries.push({ stanza, at: now, chars: stanza.toString().length });
    if (this.#entries.length > this.length) {
      this.#entries.splice(0, this.#entries.length - this.length);
    }
  }

  /** The kept messages, oldest first (a room's state handed to another node). */
  entries(): HistoryEntry[] {
    return this.#entries.map(({ stanza, at }) => ({ stanza, at }));
  }

  /** Keeps `entries` as well, in time order, within the length (a takeover, a merge). */
  restore(entries: HistoryEntry[]): void {
    const all = [
      ...this.#entries,
      ...entries.map((e) => ({ ...e, chars: e.stanza.toString().length })),
    ];
    this.#entries = all.sort((a, b) => a.at - b.at).slice(Math.max(0, all.length - this.length));
  }

  /** Forgets the message the room archived as `id` (a moderator retracted it). */
  forget(id: string): void {
    this.#entries = this.#entries.filter(({ stanza }) =>
      !stanza.elements("stanza-id").some((s) =>
        s.attrs.xmlns === NS.sid && s.attrs.by === this.roomJid && s.attrs.id === id
      )
    );
  }

  /** Changes the kept length (room configuration), dropping the oldest beyond it. */
  resize(length: number): void {
    this.length = length;
    if (this.#entries.length > length) this.#entries.splice(0, this.#entries.length - length);
  }

  /** The messages a joiner asked for, oldest first. */
  select(req: HistoryRequest, now = Date.now()): Element[] {
    let stanzas = 0;
    let chars = 0;
    let from = this.#entries.length;
    while (from > 0) {
      const e = this.#entries[from - 1];
      if (req.maxStanzas !== undefined && stanzas + 1 > req.maxStanzas) break;
      if (req.maxChars !== undefined && chars + e.chars > req.maxChars) break;
      if (req.seconds !== undefined && e.at < now - req.seconds * 1000) break;
      if (req.since !== undefined && e.at <= req.since) break;
      stanzas++;
      chars += e.chars;
      from--;
    }
    return this.#entries.slice(from).map((e) => e.stanza);
  }
}
