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

  constructor(
    /** The occupant JID: room@service/nick. */
    public jid: Jid,
    /** The real bare JID. */
    readonly bare: string,
    public role: Role,
    /** Messages this occupant may send into the room. */
    readonly messages: TokenBucket,
  ) {}

  get nick(): string {
    return this.jid.resource;
  }

  /** The session whose presence and JID represent the occupant to others (the first joined). */
  get primary(): OccupantSession {
    return this.sessions.values().next().value!;
  }
}
