// A room occupant: one nick held by one account, joined from one or more of its sessions.
import type { Element } from "../xml/element.ts";
import type { Jid } from "../jid/jid.ts";
import type { Role } from "./roles.ts";
import type { TokenBucket } from "../core/token_bucket.ts";

export interface OccupantSession {
  /** The real full JID. */
  jid: Jid;
  /** The last available presence this session sent to the room. */
  presence: Element;
}

export class Occupant {
  readonly sessions = new Map<string, OccupantSession>();
  /** A presence update waiting for budget, and the timer that will send it. */
  #held: { presence: Element; timer: ReturnType<typeof setTimeout> } | undefined;

  constructor(
    /** The occupant JID: room@service/nick. */
    public jid: Jid,
    /** The real bare JID. */
    readonly bare: string,
    public role: Role,
    /** Stanzas this occupant may send into or through the room. */
    readonly budget: TokenBucket,
    /** Its occupant id (XEP-0421), on its presence and messages. */
    readonly id: string,
  ) {}

  get nick(): string {
    return this.jid.resource;
  }

  /** The session whose presence and JID represent the occupant to others (the first joined). */
  get primary(): OccupantSession {
    return this.sessions.values().next().value!;
  }

  /** Replaces the held presence update if one is waiting; false when none is. */
  replaceHeld(presence: Element): boolean {
    if (!this.#held) return false;
    this.#held.presence = presence;
    return true;
  }

  /** Holds a presence update; after `ms` the latest one held goes to `send`. */
  hold(presence: Element, ms: number, send: (presence: Element) => void): void {
    const timer = setTimeout(() => {
      const latest = this.#held!.presence;
      this.#held = undefined;
      send(latest);
    }, ms);
    this.#held = { presence, timer };
  }

  /** Drops a held update: the occupant left, or changed nick with a newer presence. */
  release(): void {
    if (this.#held) clearTimeout(this.#held.timer);
    this.#held = undefined;
  }
}
