// Presence (RFC 6121 §4): initial presence with probes and broadcast, updates, directed presence,
// unavailable broadcast on logout or a dropped connection, and answers to probes. A session that
// replaces another with the same full JID takes over what contacts and rooms were told.
import type { Host, Module, OutboundEvent, StanzaEvent } from "../core/host.ts";
import { isLocal, type LocalSession, type Session } from "../router/sessions.ts";
import { errorReply } from "../router/stanza_error.ts";
import { answerFailure } from "../core/failure.ts";
import { type Element, x } from "../xml/element.ts";
import { parseJid } from "../jid/jid.ts";
import { readdressed } from "./delivery.ts";
import { sendPresenceOf } from "./subscriptions.ts";
import { hasFrom, hasTo } from "../storage/store.ts";

function priorityOf(p: Element): number {
  const n = Number.parseInt(p.childText("priority") ?? "0", 10);
  return Number.isFinite(n) ? Math.max(-128, Math.min(127, n)) : 0;
}

/** Sends `presence` to every contact subscribed to the user and to the user's other resources. */
async function broadcast(host: Host, session: Session, presence: Element, probe: boolean) {
  const { store, router, sessions } = host.server;
  const { local, domain, bare } = session.jid;
  const roster = await store.getRoster(local, domain);
  for (const item of roster.items) {
    if (hasFrom(item.subscription)) router.sendFrom(readdressed(presence, item.jid));
    if (probe && hasTo(item.subscription)) {
      router.sendFrom(x("presence", { from: bare, to: item.jid, type: "probe" }));
    }
  }
  for (const other of sessions.resources(bare)) {
    if (other === session || !other.available) continue;
    sessions.deliver(other, readdressed(presence, other.jid.full));
    // A newly available resource learns about the account's other resources (§4.2.2).
    if (probe && other.presence) {
      sessions.deliver(session, readdressed(other.presence, session.jid.full));
    }
  }
}

/**
 * Tells contacts, the account's other resources and every entity that got directed presence that
 * the session is gone. Runs on the account's serial queue (it reads the roster). For a session on
 * another node, only contacts and resources are told: the rest is known to its own node.
 */
export function goUnavailable(host: Host, session: Session, presence: Element): Promise<void> {
  if (!isLocal(session)) return broadcast(host, session, presence, false);
  session.available = false;
  session.announced = false;
  session.presence = null;
  host.server.sessions.changed(session);
  const directed = [...session.directed];
  session.directed.clear();
  return broadcast(host, session, presence, false).then(() => {
    for (const to of directed) host.server.router.sendFrom(readdressed(presence, to));
  });
}

function outbound(host: Host, session: LocalSession, stanza: Element): void {
  const type = stanza.attrs.type;
  const serial = host.server.serial;
  const bare = session.jid.bare;
  // A presence the store keeps from going out is answered with an error to the client.
  const failed = answerFailure(
    stanza,
    `presence of ${session.jid.full}`,
    (r) => host.server.sessions.deliver(session, r),
  );
  if (type === undefined) {
    const initial = !session.available;
    session.priority = priorityOf(stanza);
    session.presence = stanza;
    session.available = true;
    session.announced = true;
    host.server.sessions.changed(session);
    serial.call(bare, () => broadcast(host, session, stanza, initial)).catch(failed);
    if (initial) host.events.fire("session/available", session);
  } else if (type === "unavailable" && session.announced) {
    serial.call(bare, () => goUnavailable(host, session, stanza)).catch(failed);
  }
}

/**
 * Directed presence (§4.6): who got it is remembered, to be told when the session goes away; at
 * most `max_directed_presences` per session. Beyond it the presence is not sent and the sender gets
 * policy-violation: a limit of the service, which waiting does not lift (resource-constraint, type
 * wait, would say the server is momentarily short of resources, RFC 6120 §8.3.3.12/18); sending
 * unavailable to some of them does (type modify).
 */
function directed(host: Host, ev: OutboundEvent): boolean {
  const { session, stanza } = ev;
  const to = ev.to.full;
  if (stanza.attrs.type === "unavailable") session.directed.delete(to);
  if (stanza.attrs.type !== undefined || session.directed.has(to)) return false;
  const max = host.server.config.limits.max_directed_presences;
  if (session.directed.size < max) {
    session.directed.add(to);
    return false;
  }
  const reply = errorReply(stanza, "policy-violation", {
    text: `directed presence to more than ${max} entities`,
  });
  if (reply) host.server.sessions.deliver(session, reply);
  return true;
}

/** Answers a probe with the presence of each available resource if the prober is subscribed. */
async function probe(host: Host, { from, to }: StanzaEvent): Promise<void> {
  const item = await host.server.store.getRosterItem(to.local, to.domain, from.bare);
  if (!item || !hasFrom(item.subscription)) return;
  const anyone = [...host.server.sessions.resources(to.bare)].some((s) => s.available);
  if (anyone) sendPresenceOf(host, to, from.full, false);
  else {host.server.router.sendFrom(
      x("presence", { from: to.bare, to: from.full, type: "unavailable" }),
    );}
}

/**
 * Sends the current presence of a local session again to whoever on `node` should have it
 * (contacts, the account's resources, entities that got directed presence): that node's sessions
 * were told it was gone when the link to it was lost, or never heard of it.
 */
async function presentAgain(host: Host, session: LocalSession, node: string): Promise<void> {
  const { store, router, sessions } = host.server;
  const presence = session.presence;
  if (!session.available || !presence) return;
  const targets = new Set<string>(session.directed);
  const roster = await store.getRoster(session.jid.local, session.jid.domain);
  for (const item of roster.items) if (hasFrom(item.subscription)) targets.add(item.jid);
  targets.add(session.jid.bare);
  for (const to of targets) {
    const jid = parseJid(to);
    if (!jid) continue;
    const there = jid.isBare ? [...sessions.resources(jid.bare)] : [sessions.get(jid)];
    for (const s of there) {
      if (s?.node === node && s.available) {
        router.sendFrom(readdressed(presence, s.jid.full));
      }
    }
  }
}

export const presenceModule: Module = {
  name: "presence",
  install(host) {
    const { sessions, serial } = host.server;
    host.events.on("stanza/out", (ev) => {
      if (ev.stanza.name !== "presence") return false;
      if (!ev.toAbsent) return directed(host, ev);
      outbound(host, ev.session, ev.stanza);
      return true;
    }, 50);
    host.events.on("presence/bare", (ev) => {
      const type = ev.stanza.attrs.type;
      if (type === "probe") {
        serial.run(ev.to.bare, () => probe(host, ev));
      } else if (type === undefined || type === "unavailable") {
        for (const s of sessions.resources(ev.to.bare)) {
          if (s.available) sessions.deliver(s, ev.stanza);
        }
      }
      return true;
    });
    // A client reconnecting with the same resource: to contacts and rooms nothing happened, so
    // the new session owes them the unavailable presence the old one would have sent. (The
    // directed presence of an old session on another node comes from there: src/cluster/node.ts.)
    host.events.on("session/replaced", ({ old, by }) => {
      by.announced ||= isLocal(old) ? old.announced : old.available;
      if (isLocal(old)) {
        for (const to of old.directed) by.directed.add(to);
        old.directed.clear();
        old.announced = false;
      }
      old.available = false;
    });
    host.events.on("node/up", (node) => {
      for (const s of sessions.local()) {
        if (s.jid.domain === host.domain && s.announced) {
          serial.run(s.jid.bare, () => presentAgain(host, s, node));
        }
      }
    });
    host.events.on("session/closed", (session) => {
      const gone = x("presence", { from: session.jid.full, type: "unavailable" });
      if (session.announced) {
        serial.run(session.jid.bare, () => goUnavailable(host, session, gone));
        return;
      }
      // Directed presence without initial presence (a MUC join, §4.6) still ends with the session.
      for (const to of session.directed) host.server.router.sendFrom(readdressed(gone, to));
      session.directed.clear();
    });
  },
};
