// One chat room (XEP-0045): occupants, entering and leaving, groupchat, subject, private messages,
// invitations, and the removals that the admin and owner protocols trigger. Its lasting state
// (configuration, affiliations, subject) is plain data, so another node could take the room over.
import { Element, x } from "../xml/element.ts";
import { NS } from "../xml/ns.ts";
import { type Jid, parseJid } from "../jid/jid.ts";
import { nicknameKey, prepNickname } from "../jid/precis.ts";
import type { Router } from "../router/router.ts";
import type { ErrorCondition, ErrorOptions } from "../router/stanza_error.ts";
import { readdressed } from "../im/delivery.ts";
import type { MucConfig } from "../config/schema.ts";
import { defaultRoomConfig, type RoomConfig } from "./room_config.ts";
import {
  type Affiliation,
  affiliationRank,
  defaultRole,
  mayPrivateMessage,
  type Role,
} from "./roles.ts";
import { Occupant } from "./occupant.ts";
import { TokenBucket } from "../core/token_bucket.ts";
import { type HistoryEntry, historyRequest, RoomHistory } from "./history.ts";
import { itemElement, mucBounce, mucUserX, occupantPresence, STATUS } from "./room_stanzas.ts";
import type { RoomArchive } from "../mam/room_archive.ts";
import { withOccupantId } from "./occupant_id.ts";

/** What a room needs from its service. */
export interface RoomServices {
  readonly router: Router;
  readonly config: MucConfig;
  /** Stores the room's state when it is persistent, forgets it when not. */
  persist(room: Room): void;
  /** The room is gone: destroyed, or emptied while temporary or never configured. */
  removed(room: Room): void;
  /** An account became or ceased to be an owner (the service counts the rooms each owns). */
  ownersChanged(room: Room): void;
  /** Sends one stanza to every session of `occupants` (a cluster groups them by node). */
  fanout(stanza: Element, from: Jid, occupants: Iterable<Occupant>): void;
  /** XEP-0421: the occupant id of account `bare` in room `room`. */
  occupantId(room: string, bare: string): string;
  /** The rooms' message archive (XEP-0313), when archiving is on. */
  readonly archive: RoomArchive | undefined;
}

/** The state that outlives occupants and restarts. */
export interface RoomState {
  config: RoomConfig;
  affiliations: Record<string, Affiliation>;
  subject: { text: string; nick: string };
}

/** Everything a room holds, as data: what another node needs to take it over or merge it. */
export interface RoomSnapshot extends RoomState {
  locked: boolean;
  occupants: OccupantData[];
  history: HistoryEntry[];
}

export interface OccupantData {
  nick: string;
  bare: string;
  role: Role;
  sessions: { jid: Jid; presence: Element }[];
}

export interface Removal {
  codes: number[];
  actor?: string;
  reason?: string;
  /** The affiliation shown in the unavailable presence (a ban shows outcast). */
  affiliation?: Affiliation;
  destroy?: Element;
}

/**
 * Errors from an occupant's address that prove its session is gone (a "ghost"). Not
 * service-unavailable: a live session's server answers with it what its blocklist refuses
 * (XEP-0191), indistinguishable by design from a missing session. A local session's end reaches the
 * room as its directed unavailable presence.
 */
const GONE = new Set([
  "gone",
  "item-not-found",
  "recipient-unavailable",
  "remote-server-not-found",
  "remote-server-timeout",
]);
/** How long an occupant's presence update over budget is held (the latest one then goes out). */
const PRESENCE_HOLD_MS = 1000;
const FORWARDED_MAX = 10_000;

export class Room {
  readonly jid: Jid;
  config: RoomConfig;
  readonly #affiliations: Map<string, Affiliation>;
  subject: { text: string; nick: string };
  /** A new room stays locked until its owner configures it (§10.1). */
  locked: boolean;
  readonly history: RoomHistory;
  #occupants = new Map<string, Occupant>();
  #bySession = new Map<string, Occupant>();
  /** iqs forwarded between occupants: our id → the original request. */
  #forwarded = new Map<string, { id: string | undefined; requester: Jid; target: Jid }>();
  #nextId = 0;
  /** Stanzas per second the room may fan out, all senders together. */
  #deliveries: TokenBucket;
  /** What non-occupants (declining an invitation) may make the room send, all together. */
  #outsiders: TokenBucket;
  /** When a stanza last reached the room (idle persistent rooms hibernate). */
  lastActive = Date.now();

  constructor(readonly svc: RoomServices, jid: Jid, state?: RoomState) {
    this.jid = jid;
    // Stored configurations are completed with today's defaults (fields added since they were saved).
    this.config = {
      ...defaultRoomConfig(svc.config, svc.archive?.byDefault ?? false),
      ...state?.config,
    };
    this.#affiliations = new Map(Object.entries(state?.affiliations ?? {}));
    this.subject = state?.subject ?? { text: "", nick: "" };
    this.locked = state === undefined;
    this.history = new RoomHistory(jid.bare, this.config.historyLength);
    const rate = svc.config.room_delivery_rate;
    this.#deliveries = new TokenBucket(rate, rate);
    this.#outsiders = this.#senderBudget();
  }

  #occupantId(bare: string): string {
    return this.svc.occupantId(this.jid.bare, bare);
  }

  /** Whether the room archives its messages now (XEP-0313): persistent, and configured to. */
  get archiving(): boolean {
    return this.svc.archive !== undefined && this.config.persistent && this.config.archiving;
  }

  #senderBudget(): TokenBucket {
    return new TokenBucket(this.svc.config.message_rate, this.svc.config.message_burst);
  }

  get name(): string {
    return this.jid.local;
  }

  get occupantCount(): number {
    return this.#occupants.size;
  }

  occupants(): IterableIterator<Occupant> {
    return this.#occupants.values();
  }

  state(): RoomState {
    return {
      config: this.config,
      affiliations: Object.fromEntries(this.#affiliations),
      subject: this.subject,
    };
  }

  snapshot(): RoomSnapshot {
    return {
      ...this.state(),
      locked: this.locked,
      occupants: [...this.#occupants.values()].map((o) => ({
        nick: o.nick,
        bare: o.bare,
        role: o.role,
        sessions: [...o.sessions.values()],
      })),
      history: this.history.entries(),
    };
  }

  /** Takes occupants and history over from a snapshot of this room, telling nobody (a takeover). */
  restore(snap: RoomSnapshot): void {
    this.locked = snap.locked;
    for (const o of snap.occupants) this.#admit(o);
    this.history.restore(snap.history);
  }

  #admit(o: OccupantData): Occupant {
    const occ = new Occupant(
      this.jid.withResource(o.nick),
      o.bare,
      o.role,
      this.#senderBudget(),
      this.#occupantId(o.bare),
    );
    for (const s of o.sessions) {
      occ.sessions.set(s.jid.full, s);
      this.#bySession.set(s.jid.full, occ);
    }
    this.#occupants.set(nicknameKey(o.nick), occ);
    return occ;
  }

  /** Adds sessions to an occupant, telling nobody (another copy of the room had them in it). */
  addSessions(occ: Occupant, sessions: OccupantData["sessions"]): void {
    for (const s of sessions) {
      occ.sessions.set(s.jid.full, s);
      this.#bySession.set(s.jid.full, occ);
    }
  }

  /**
   * An occupant of another copy of this room enters as if it had joined: it is sent everyone's
   * presence, and everyone its own.
   */
  enterFromCopy(o: OccupantData): void {
    const occ = this.#admit(o);
    for (const other of this.#occupants.values()) {
      if (other === occ) continue;
      const p = this.#presenceOf(other, other.primary.presence, undefined, {}, this.seesJids(occ));
      this.#sendTo(occ, p, other.jid);
    }
    this.#broadcastPresence(occ, occ.primary.presence, undefined, {});
  }

  /** Tells the sessions of an occupant of another copy of this room that they left, and why. */
  refuseFromCopy(o: OccupantData, reason: string): void {
    const gone = new Occupant(
      this.jid.withResource(o.nick),
      o.bare,
      "none",
      this.#outsiders,
      this.#occupantId(o.bare),
    );
    for (const s of o.sessions) gone.sessions.set(s.jid.full, s);
    const p = this.#presenceOf(gone, null, "unavailable", { reason }, true, true);
    this.#sendTo(gone, p, gone.jid);
  }

  /** A session proved gone (an error from it, its node died): it leaves with status 333. */
  sessionGone(full: Jid): void {
    const occ = this.#bySession.get(full.full);
    if (occ) this.#leave(occ, full, null, [STATUS.ERROR]);
  }

  /**
   * Drops a session telling nobody: this copy of the room is stale (its node woke from a stall),
   * and the copy another node runs meanwhile speaks for the room.
   */
  forget(full: Jid): void {
    const occ = this.#bySession.get(full.full);
    if (!occ) return;
    this.#bySession.delete(full.full);
    occ.sessions.delete(full.full);
    if (occ.sessions.size > 0) return;
    occ.release();
    this.#occupants.delete(nicknameKey(occ.nick));
    this.#endIfEmpty();
  }

  affiliation(bare: string): Affiliation {
    if (this.svc.config.admins.includes(bare)) return "owner";
    return this.#affiliations.get(bare) ?? "none";
  }

  /** The stored affiliations (service admins' implicit ownership not included). */
  affiliations(): MapIterator<[string, Affiliation]> {
    return this.#affiliations.entries();
  }

  /** The accounts with the owner affiliation. */
  owners(): string[] {
    const out: string[] = [];
    for (const [bare, aff] of this.#affiliations) if (aff === "owner") out.push(bare);
    return out;
  }

  /** Whether `added` more accounts with an affiliation would pass the service's cap. */
  affiliationsFull(added = 1): boolean {
    return this.#affiliations.size + added > this.svc.config.max_affiliations;
  }

  /** Sets (or with "none" removes) an account's affiliation; the caller persists the room. */
  setAffiliation(bare: string, aff: Affiliation): void {
    const before = this.#affiliations.get(bare) ?? "none";
    if (aff === "none") this.#affiliations.delete(bare);
    else this.#affiliations.set(bare, aff);
    if ((before === "owner") !== (aff === "owner")) this.svc.ownersChanged(this);
  }

  occupantByNick(nick: string): Occupant | undefined {
    return this.#occupants.get(nicknameKey(nick));
  }

  occupantOf(full: Jid): Occupant | undefined {
    return this.#bySession.get(full.full);
  }

  /** Whether `to` may see occupants' real JIDs. */
  seesJids(to: Occupant): boolean {
    return this.config.whois === "anyone" || to.role === "moderator";
  }

  receive(stanza: Element, from: Jid, to: Jid): void {
    if (stanza.attrs.type === "error") return this.#errorFrom(stanza, from);
    if (stanza.name === "presence") return this.#presence(stanza, from, to);
    if (stanza.name === "message") {
      return to.isBare ? this.#roomMessage(stanza, from) : this.#privateMessage(stanza, from, to);
    }
    if (stanza.name === "iq") return this.#occupantIq(stanza, from, to);
  }

  #bounce(stanza: Element, condition: ErrorCondition, opts?: ErrorOptions): void {
    mucBounce(this.svc.router, stanza, condition, opts);
  }

  #send(stanza: Element, from: Jid, to: Jid): void {
    this.svc.router.route(readdressed(stanza, to.full), from, to);
  }

  #sendTo(occ: Occupant, stanza: Element, from: Jid): void {
    for (const s of occ.sessions.values()) this.#send(stanza, from, s.jid);
  }

  /** Sends one stanza to every occupant session, serializing its payload once. */
  broadcast(stanza: Element, from: Jid): void {
    for (const c of stanza.children) if (typeof c !== "string") c.toString();
    this.svc.fanout(stanza, from, this.#occupants.values());
  }

  // ---- presence: entering, updates, nick changes, leaving (§7.2–7.4, §7.6, §7.14)

  #presence(stanza: Element, from: Jid, to: Jid): void {
    const type = stanza.attrs.type;
    const occ = this.#bySession.get(from.full);
    if (type === "unavailable") {
      if (occ) this.#leave(occ, from, stanza);
      return;
    }
    if (type !== undefined) return; // subscriptions and probes mean nothing to a room
    if (to.isBare) return this.#bounce(stanza, "jid-malformed", { text: "a nick is required" });
    if (!occ) return this.#enter(stanza, from, to.resource);
    const nick = prepNickname(to.resource);
    if (nick === null) return this.#bounce(stanza, "jid-malformed");
    if (nick === occ.nick) {
      occ.sessions.set(from.full, { jid: from, presence: stanza });
      return this.#presenceUpdate(occ, stanza);
    }
    this.#changeNick(occ, stanza, from, nick);
  }

  /**
   * Broadcasts an occupant's new presence. Over budget it is held, not refused (an error would
   * read as a failed join): the latest held update goes out once budget is back.
   */
  #presenceUpdate(occ: Occupant, stanza: Element): void {
    if (occ.replaceHeld(stanza)) return;
    if (this.#afford(occ.budget, this.#bySession.size)) {
      return this.#broadcastPresence(occ, stanza, undefined, {});
    }
    occ.hold(stanza, PRESENCE_HOLD_MS, (latest) => this.#presenceUpdate(occ, latest));
  }

  /**
   * Charges one stanza to its sender's budget and the `deliveries` it makes the room send to the
   * room's budget: false when either is spent, and the stanza is then refused.
   */
  #afford(sender: TokenBucket, deliveries: number): boolean {
    return sender.take() && this.#deliveries.take(deliveries);
  }

  #refuseFlood(stanza: Element): void {
    this.#bounce(stanza, "resource-constraint", { text: "too many stanzas; slow down" });
  }

  #enter(stanza: Element, from: Jid, requested: string): void {
    const nick = prepNickname(requested);
    if (nick === null) return this.#bounce(stanza, "jid-malformed", { text: "invalid nick" });
    const join = stanza.child("x", NS.muc);
    const aff = this.affiliation(from.bare);
    const rank = affiliationRank(aff);
    const creating = this.locked && this.#occupants.size === 0 && this.#affiliations.size === 0;
    if (this.locked && !creating && aff !== "owner") {
      return this.#bounce(stanza, "item-not-found", { text: "the room is locked" });
    }
    if (aff === "outcast") return this.#bounce(stanza, "forbidden", { text: "you are banned" });
    if (this.config.membersOnly && rank < affiliationRank("member")) {
      return this.#bounce(stanza, "registration-required", { text: "members only" });
    }
    const existing = this.#occupants.get(nicknameKey(nick));
    if (existing && existing.bare !== from.bare) {
      return this.#bounce(stanza, "conflict", { text: "nick in use" });
    }
    if (
      this.config.passwordProtected && aff !== "owner" &&
      join?.childText("password") !== this.config.password
    ) return this.#bounce(stanza, "not-authorized", { text: "password required" });
    if (
      !existing && this.#occupants.size >= this.config.maxUsers &&
      rank < affiliationRank("admin")
    ) return this.#bounce(stanza, "service-unavailable", { type: "wait", text: "room is full" });
    // Presence both ways with everyone already in: the room's budget bounds join/leave cycling.
    if (!this.#deliveries.take(2 * this.#bySession.size + 1)) return this.#refuseFlood(stanza);

    const occ = existing ?? new Occupant(
      this.jid.withResource(nick),
      from.bare,
      defaultRole(creating ? "owner" : aff, this.config),
      this.#senderBudget(),
      this.#occupantId(from.bare),
    );
    if (creating) this.setAffiliation(from.bare, "owner");
    occ.sessions.set(from.full, { jid: from, presence: stanza });
    this.#bySession.set(from.full, occ);
    // Existing occupants first, then the joiner's own presence to everyone, self last (§7.2.3).
    for (const other of this.#occupants.values()) {
      if (other === occ) continue;
      const p = this.#presenceOf(other, other.primary.presence, undefined, {}, this.seesJids(occ));
      this.#send(p, other.jid, from);
    }
    this.#occupants.set(nicknameKey(nick), occ);
    const codes: number[] = [];
    if (this.config.whois === "anyone") codes.push(STATUS.NON_ANONYMOUS);
    if (creating) codes.push(STATUS.CREATED);
    if (nick !== requested) codes.push(STATUS.NICK_MODIFIED);
    this.#broadcastPresence(occ, stanza, undefined, { selfCodes: codes });
    const history = join ? historyRequest(join.child("history")) : {};
    for (const m of this.history.select(history)) this.#send(m, this.jid, from);
    const subjectFrom = this.subject.nick ? this.jid.withResource(this.subject.nick) : this.jid;
    this.#send(
      x(
        "message",
        { from: subjectFrom.full, type: "groupchat" },
        x("subject", {}, this.subject.text),
      ),
      subjectFrom,
      from,
    );
    // A groupchat 1.0 join (no MUC payload) cannot configure: the room is an instant one (§10.1.2).
    if (creating && !join) this.locked = false;
  }

  #changeNick(occ: Occupant, stanza: Element, from: Jid, nick: string): void {
    const holder = this.#occupants.get(nicknameKey(nick));
    if (holder && holder !== occ) return this.#bounce(stanza, "conflict", { text: "nick in use" });
    if (occ.sessions.size > 1) {
      return this.#bounce(stanza, "not-acceptable", {
        text: "leave from your other sessions before changing nick",
      });
    }
    if (!this.#afford(occ.budget, 2 * this.#bySession.size)) return this.#refuseFlood(stanza);
    occ.release();
    // Unavailable from the old nick with 303 and the new nick, then available from the new (§7.6).
    this.#broadcastPresence(occ, null, "unavailable", {
      codes: [STATUS.NICK_CHANGED],
      nick,
    });
    this.#occupants.delete(nicknameKey(occ.nick));
    occ.jid = this.jid.withResource(nick);
    occ.sessions.set(from.full, { jid: from, presence: stanza });
    this.#occupants.set(nicknameKey(nick), occ);
    this.#broadcastPresence(occ, stanza, undefined, {});
  }

  /** One session of an occupant leaves; with the last one, the occupant leaves the room. */
  #leave(occ: Occupant, from: Jid, stanza: Element | null, codes: number[] = []): void {
    if (occ.sessions.size === 1) {
      this.remove(occ, { codes }, stanza);
      return this.#endIfEmpty();
    }
    occ.sessions.delete(from.full);
    this.#bySession.delete(from.full);
    // Other sessions keep the nick: only the leaving one learns it left.
    const p = this.#presenceOf(occ, stanza, "unavailable", { codes, jid: from.full }, true, true);
    this.#send(p, occ.jid, from);
  }

  /**
   * Removes an occupant with all its sessions: leaving, kick, ban, loss of membership, shutdown,
   * destroy. `sent` is the unavailable presence the occupant sent, if it left by itself.
   */
  remove(occ: Occupant, r: Removal, sent: Element | null = null): void {
    occ.release();
    const opts = {
      role: "none" as Role,
      affiliation: r.affiliation,
      codes: r.codes,
      actor: r.actor,
      reason: r.reason,
      extra: r.destroy,
    };
    this.#occupants.delete(nicknameKey(occ.nick));
    const self = this.#presenceOf(occ, sent, "unavailable", opts, true, true);
    for (const s of occ.sessions.values()) {
      this.#bySession.delete(s.jid.full);
      this.#send(self, occ.jid, s.jid);
    }
    if (!r.destroy) this.#broadcastPresence(occ, sent, "unavailable", opts);
  }

  #endIfEmpty(): void {
    if (this.#occupants.size > 0) return;
    if (this.locked || !this.config.persistent) this.svc.removed(this);
  }

  /** Tells every occupant the room is gone (§10.9) and drops it. */
  destroy(alternate?: string, reason?: string): void {
    const destroy = x(
      "destroy",
      { jid: alternate },
      reason !== undefined && x("reason", {}, reason),
    );
    for (const occ of [...this.#occupants.values()]) {
      this.remove(occ, { codes: [], affiliation: "none", destroy });
    }
    this.svc.removed(this);
  }

  /** Ends the room's occupancy for a shutdown (status 332). */
  shutdown(): void {
    for (const occ of [...this.#occupants.values()]) {
      this.remove(occ, { codes: [STATUS.SHUTDOWN] });
    }
  }

  /** Applies a new configuration (§10.2): unlocks, tells occupants, enforces membership. */
  configure(next: RoomConfig): void {
    const prev = this.config;
    const wasLocked = this.locked;
    this.config = next;
    this.locked = false;
    this.history.resize(next.historyLength);
    if (!wasLocked) {
      const codes: number[] = [STATUS.CONFIG_CHANGED];
      if (prev.whois !== next.whois) {
        codes.push(next.whois === "anyone" ? STATUS.NOW_NON_ANONYMOUS : STATUS.NOW_SEMI_ANONYMOUS);
      }
      this.broadcast(
        x("message", { from: this.jid.full, type: "groupchat" }, mucUserX([], codes)),
        this.jid,
      );
    }
    if (next.membersOnly && !prev.membersOnly) {
      for (const occ of [...this.#occupants.values()]) {
        if (affiliationRank(this.affiliation(occ.bare)) < affiliationRank("member")) {
          this.remove(occ, { codes: [STATUS.MEMBERS_ONLY], affiliation: "none" });
        }
      }
    }
    this.svc.persist(this);
  }

  // ---- presence building and broadcast

  #presenceOf(
    occ: Occupant,
    sent: Element | null,
    type: "unavailable" | undefined,
    o: PresenceOptions,
    withJid: boolean,
    self = false,
  ): Element {
    const item = itemElement({
      affiliation: o.affiliation ?? this.affiliation(occ.bare),
      role: o.role ?? occ.role,
      jid: withJid ? (o.jid ?? occ.primary.jid.full) : undefined,
      nick: o.nick,
      actor: o.actor,
      reason: o.reason,
    });
    const codes = self ? [STATUS.SELF, ...(o.selfCodes ?? []), ...(o.codes ?? [])] : o.codes;
    return occupantPresence(occ.jid.full, sent, type, mucUserX([item, o.extra], codes), occ.id);
  }

  /** Sends an occupant's presence to every occupant as each may see it (real JID or not). */
  #broadcastPresence(
    occ: Occupant,
    sent: Element | null,
    type: "unavailable" | undefined,
    o: PresenceOptions,
  ): void {
    const variants: (Element | undefined)[] = [];
    for (const to of this.#occupants.values()) {
      const self = to === occ;
      const withJid = self || this.seesJids(to);
      const k = (self ? 2 : 0) + (withJid ? 1 : 0);
      const p = variants[k] ??= this.#presenceOf(occ, sent, type, o, withJid, self);
      this.#sendTo(to, p, occ.jid);
    }
  }

  /** Re-announces an occupant after a role or affiliation change (§9, §10). */
  announce(occ: Occupant, actor?: string, reason?: string): void {
    this.#broadcastPresence(occ, occ.primary.presence, undefined, { actor, reason });
  }

  // ---- messages (§7.4, §7.5, §7.8, §8.1)

  #roomMessage(stanza: Element, from: Jid): void {
    const occ = this.#bySession.get(from.full);
    const user = stanza.child("x", NS.mucUser);
    if (user && stanza.attrs.type !== "groupchat") return this.#mediated(stanza, from, occ, user);
    if (stanza.attrs.type !== "groupchat") {
      return this.#bounce(stanza, "bad-request", { text: "send groupchat messages to the room" });
    }
    if (!occ) return this.#bounce(stanza, "not-acceptable", { text: "you are not in the room" });
    if (!occ.budget.take()) {
      return this.#bounce(stanza, "resource-constraint", { text: "too many messages; slow down" });
    }
    if (occ.role === "visitor" || occ.role === "none") {
      return this.#bounce(stanza, "forbidden", { text: "you have no voice" });
    }
    const subject = stanza.child("subject");
    if (subject && !stanza.child("body")) {
      const may = occ.role === "moderator" || this.config.changeSubject;
      if (!may) {
        return this.#bounce(stanza, "forbidden", { text: "you may not change the subject" });
      }
      this.subject = { text: subject.text(), nick: occ.nick };
      this.svc.persist(this);
    }
    // The room's own budget bounds what many senders together make it fan out.
    if (!this.#deliveries.take(this.#bySession.size)) {
      return this.#bounce(stanza, "resource-constraint", { text: "the room is too busy" });
    }
    let out = withOccupantId(
      new Element(
        "message",
        { from: occ.jid.full, type: "groupchat", id: stanza.attrs.id },
        stanza.children,
      ),
      occ.id,
    );
    if (this.archiving) {
      const origin = stanza.child("origin-id", NS.sid)?.attrs.id;
      const key = origin === undefined ? undefined : `${from.full}\0${origin}`;
      out = this.svc.archive!.record(this.jid, out, occ.jid, key);
    }
    this.broadcast(out, occ.jid);
    if (!subject && stanza.child("body")) this.history.add(out);
  }

  /**
   * A moderator retracted the archived message `id` (XEP-0425): everyone is told, the room's
   * history forgets it, and the retraction is archived in its turn.
   */
  retract(id: string, retraction: Element): void {
    let out = new Element(
      "message",
      { from: this.jid.full, type: "groupchat", id: `retract-${id}` },
      [retraction],
    );
    if (this.archiving) out = this.svc.archive!.record(this.jid, out, this.jid, undefined);
    this.history.forget(id);
    this.broadcast(out, this.jid);
  }

  #privateMessage(stanza: Element, from: Jid, to: Jid): void {
    if (stanza.attrs.type === "groupchat") {
      return this.#bounce(stanza, "bad-request", { text: "groupchat goes to the room" });
    }
    const occ = this.#bySession.get(from.full);
    if (!occ) return this.#bounce(stanza, "not-acceptable", { text: "you are not in the room" });
    if (!mayPrivateMessage(occ.role, this.config)) {
      return this.#bounce(stanza, "forbidden", { text: "private messages are not allowed" });
    }
    const target = this.occupantByNick(to.resource);
    if (!target) return this.#bounce(stanza, "item-not-found", { text: "no such occupant" });
    if (!this.#afford(occ.budget, target.sessions.size)) return this.#refuseFlood(stanza);
    const out = withOccupantId(
      new Element(
        "message",
        { ...stanza.attrs, from: occ.jid.full },
        [...stanza.children, x("x", { xmlns: NS.mucUser })],
      ),
      occ.id,
    );
    this.#sendTo(target, out, occ.jid);
  }

  /**
   * Invitations and declines mediated by the room (§7.8.2, §7.8.3). Each one sent is charged like
   * a message: to the occupant's budget (declines from outside the room to a budget all outsiders
   * share) and to the room's.
   */
  #mediated(stanza: Element, from: Jid, occ: Occupant | undefined, user: Element): void {
    const sender = occ?.budget ?? this.#outsiders;
    for (const decline of user.elements("decline")) {
      const to = parseJid(decline.attrs.to ?? "");
      if (!to) return this.#bounce(stanza, "jid-malformed");
      if (!this.#afford(sender, 1)) return this.#refuseFlood(stanza);
      this.#notify(
        to,
        stanza.attrs.id,
        mucUserX([x("decline", { from: from.bare }, decline.child("reason"))]),
      );
    }
    const invites = user.elements("invite");
    if (invites.length === 0) return;
    if (!occ) return this.#bounce(stanza, "not-acceptable", { text: "you are not in the room" });
    const rank = affiliationRank(this.affiliation(occ.bare));
    const may = this.config.allowInvites || occ.role === "moderator" ||
      rank >= affiliationRank("admin");
    if (!may) return this.#bounce(stanza, "forbidden", { text: "you may not invite" });
    for (const invite of invites) {
      const to = parseJid(invite.attrs.to ?? "");
      if (!to) return this.#bounce(stanza, "jid-malformed");
      // Inviting to a members-only room makes the invitee a member (§7.8.2).
      const joining = this.config.membersOnly && this.affiliation(to.bare) === "none";
      if (joining && this.affiliationsFull()) {
        return this.#bounce(stanza, "not-allowed", { text: "the room's member list is full" });
      }
      if (!this.#afford(sender, 1)) return this.#refuseFlood(stanza);
      if (joining) {
        this.setAffiliation(to.bare, "member");
        this.svc.persist(this);
      }
      this.#notify(
        to,
        stanza.attrs.id,
        mucUserX([
          x("invite", { from: from.full }, invite.child("reason")),
          this.config.passwordProtected && x("password", {}, this.config.password),
        ]),
        x("body", {}, `${from.bare} invites you to ${this.jid.bare}`),
      );
    }
  }

  /** A message from the room itself to someone, in or out of the room. */
  #notify(to: Jid, id: string | undefined, ...children: Element[]): void {
    this.svc.router.route(
      x("message", { from: this.jid.full, to: to.full, id }, ...children),
      this.jid,
      to,
    );
  }

  /** An error from an occupant's address proving its session gone: it leaves (status 333). */
  #errorFrom(stanza: Element, from: Jid): void {
    if (!this.#bySession.has(from.full) || stanza.name === "iq") {
      return this.#forwardedReply(stanza, from);
    }
    const condition = stanza.child("error")?.elements()[0]?.name ?? "";
    if (GONE.has(condition)) this.sessionGone(from);
  }

  // ---- iq between occupants (§7.9) and self-ping (XEP-0410)

  #occupantIq(stanza: Element, from: Jid, to: Jid): void {
    const type = stanza.attrs.type;
    if (type === "result") return this.#forwardedReply(stanza, from);
    if (type !== "get" && type !== "set") return;
    const occ = this.#bySession.get(from.full);
    if (!occ) return this.#bounce(stanza, "not-acceptable", { text: "you are not in the room" });
    const target = this.occupantByNick(to.resource);
    if (!target) return this.#bounce(stanza, "item-not-found", { text: "no such occupant" });
    // Self-ping: answered here, not by some other client of the same account (XEP-0410 §3.3).
    if (target === occ && stanza.child("ping", NS.ping)) {
      return this.svc.router.route(
        x("iq", { from: to.full, to: from.full, id: stanza.attrs.id, type: "result" }),
        to,
        from,
      );
    }
    if (!this.#afford(occ.budget, 1)) return this.#refuseFlood(stanza);
    const id = `muc${++this.#nextId}`;
    if (this.#forwarded.size >= FORWARDED_MAX) {
      this.#forwarded.delete(this.#forwarded.keys().next().value!);
    }
    const dest = target.primary.jid;
    this.#forwarded.set(id, { id: stanza.attrs.id, requester: from, target: dest });
    const out = new Element("iq", { from: occ.jid.full, to: dest.full, id, type }, stanza.children);
    this.svc.router.route(out, occ.jid, dest);
  }

  #forwardedReply(stanza: Element, from: Jid): void {
    if (stanza.name !== "iq") return;
    const id = stanza.attrs.id ?? "";
    const f = this.#forwarded.get(id);
    if (!f || f.target.full !== from.full) return;
    this.#forwarded.delete(id);
    const target = this.#bySession.get(from.full);
    const replyFrom = target ? target.jid : this.jid;
    this.svc.router.route(
      new Element(
        "iq",
        { from: replyFrom.full, to: f.requester.full, id: f.id, type: stanza.attrs.type },
        stanza.children,
      ),
      replyFrom,
      f.requester,
    );
  }
}

export interface PresenceOptions {
  codes?: number[];
  /** Extra codes for the occupant's own copy (besides 110). */
  selfCodes?: number[];
  role?: Role;
  affiliation?: Affiliation;
  jid?: string;
  nick?: string;
  actor?: string;
  reason?: string;
  /** Another child of the muc#user element (a room's <destroy/>). */
  extra?: Element;
}
