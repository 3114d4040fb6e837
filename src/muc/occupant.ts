// A room occupant: one nick held by one account, joined from one or more of its sessions.
import type { Element } from "../xml/element.ts";
import type { Jid } from "../jid/jid.ts";
import type { Role } from "./roles.ts";

export interface OccupantSession {
  /** The real full JID. */
  jid: Jid;
  /** The last available presence this session sent to the room. */
  presence: Element;
}

export class Occupant {
  readonly sessions = new Map<string, OccupantSession>();
  #tokens: number;
  #refilledAt = Date.now();

  constructor(
    /** The occupant JID: room@service/nick. */
    public jid: Jid,
    /** The real bare JID. */
    readonly bare: string,
    public role: Role,
    burst: number,
  ) {
    this.#tokens = burst;
  }

  get nick(): string {
    return this.jid.resource;
  }

  /** The session whose presence and JID represent the occupant to others (the first joined). */
  get primary(): OccupantSession {
    return this.sessions.values().next().value!;
  }

  /** Token bucket for messages into the room: false when the occupant is over its rate. */
  takeMessageToken(rate: number, burst: number, now = Date.now()): boolean {
    if (rate === 0) return true;
    this.#tokens = Math.min(burst, this.#tokens + (now - this.#refilledAt) * rate / 1000);
    this.#refilledAt = now;
    if (this.#tokens < 1) return false;
    this.#tokens--;
    return true;
  }
}
