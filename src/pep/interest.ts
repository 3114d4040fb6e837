// What each local resource wants to hear of (XEP-0163 §4, "filtered notifications"): its entity
// capabilities' NODE+notify features. On a resource's available presence, its `ver` is looked up
// (memory, then the store every node shares) or, when nobody knows it yet, asked of the resource
// itself with disco#info (one resource at a time per `ver`; the next one waiting is asked when it
// does not answer) and verified (caps.ts). Once known, the resource gets the last published item
// of each node it newly advertises +notify for (service.sendLast).
import type { Host } from "../core/host.ts";
import { logFailure } from "../core/failure.ts";
import type { LocalSession } from "../router/sessions.ts";
import { x } from "../xml/element.ts";
import { NS } from "../xml/ns.ts";
import { capsNode } from "./caps.ts";
import type { PepService } from "./service.ts";

/** How long a resource has to answer a disco#info query about its capabilities. */
const ANSWER_MS = 10_000;
/**
 * New vers one session may have the server ask about and keep for good: a client has one (a new
 * one after an update or a setting changed), while each ver kept is a row in the shared store.
 */
const ASKS_PER_SESSION = 8;
const NOTIFY = "+notify";

/** +notify nodes of one session looked at: a client has a few dozen. */
const MAX_INTERESTS = 200;

interface Query {
  key: string;
  session: LocalSession;
  timer: ReturnType<typeof setTimeout>;
}

export function watchInterest(host: Host, service: PepService): void {
  const { sessions } = host.server;
  /**
   * The +notify nodes a local session was sent the last items of since its initial presence:
   * each once, however its vers come and go.
   */
  const served = new WeakMap<LocalSession, Set<string>>();
  /** Local sessions waiting for a ver to be known, by key; the first is being asked. */
  const waiting = new Map<string, Set<LocalSession>>();
  /** Queries in flight by iq id. */
  const queries = new Map<string, Query>();
  /** Queries each local session was sent (ASKS_PER_SESSION). */
  const asked = new WeakMap<LocalSession, number>();
  let ids = 0;

  const failed = (what: string) => (e: unknown) => logFailure(what, e);

  /** Acts on the session's current capabilities, if known; else finds them out. */
  const update = (session: LocalSession): void => {
    if (!session.available || sessions.get(session.jid) !== session) return;
    const key = session.caps;
    if (key === undefined) return;
    const features = service.caps.known(key);
    if (!features) {
      service.caps.load([key]).then((missing) => {
        // Its presence may have changed meanwhile; a ver learned meanwhile is known now.
        if (session.caps !== key) return;
        if (missing.length && !service.caps.known(key)) wait(key, session);
        else update(session);
      }).catch(failed(`capabilities ${key}`));
      return;
    }
    let seen = served.get(session);
    if (!seen) served.set(session, seen = new Set());
    const fresh: string[] = [];
    for (const f of features) {
      if (seen.size >= MAX_INTERESTS) break;
      if (!f.endsWith(NOTIFY)) continue;
      const node = f.slice(0, -NOTIFY.length);
      if (!seen.has(node)) {
        seen.add(node);
        fresh.push(node);
      }
    }
    if (fresh.length) {
      service.sendLast(session, fresh).catch(failed(`last items for ${session.jid.full}`));
    }
  };

  const wait = (key: string, session: LocalSession): void => {
    if ((asked.get(session) ?? 0) >= ASKS_PER_SESSION || !session.presence) return;
    let list = waiting.get(key);
    if (!list) waiting.set(key, list = new Set());
    if (list.has(session)) return;
    list.add(session);
    if (list.size === 1) ask(key, session);
  };

  const ask = (key: string, session: LocalSession): void => {
    asked.set(session, (asked.get(session) ?? 0) + 1);
    const id = `caps-${++ids}`;
    const timer = setTimeout(() => done(id, false), ANSWER_MS);
    queries.set(id, { key, session, timer });
    // Asked only while its presence says this key (the callers check): it has a <c/>.
    const node = capsNode(session.presence!);
    sessions.deliver(
      session,
      x(
        "iq",
        { from: host.domain, to: session.jid.full, type: "get", id },
        x("query", { xmlns: NS.discoInfo, node }),
      ),
    );
  };

  /** A query ended: the ver learned (its waiters updated) or the next waiter asked. */
  const done = (id: string, learned: boolean): void => {
    const q = queries.get(id);
    if (!q) return;
    queries.delete(id);
    clearTimeout(q.timer);
    const list = waiting.get(q.key);
    if (!list) return;
    if (learned) {
      waiting.delete(q.key);
      for (const s of list) update(s);
      return;
    }
    list.delete(q.session);
    for (const s of list) {
      if (s.available && s.caps === q.key && s.presence) return ask(q.key, s);
      list.delete(s);
    }
    waiting.delete(q.key);
  };

  host.events.on("stanza/out", (ev) => {
    const { stanza, session } = ev;
    if (stanza.name === "presence" && ev.toAbsent) {
      const type = stanza.attrs.type;
      // After the presence module has recorded it (same task, later).
      if (type === undefined) queueMicrotask(() => update(session));
      else if (type === "unavailable") served.delete(session);
      return false;
    }
    if (stanza.name !== "iq" || (stanza.attrs.type !== "result" && stanza.attrs.type !== "error")) {
      return false;
    }
    const id = stanza.attrs.id ?? "";
    const q = queries.get(id);
    if (!q || q.session !== session) return false;
    const query = stanza.attrs.type === "result" ? stanza.child("query", NS.discoInfo) : undefined;
    if (!query) {
      done(id, false);
      return true;
    }
    service.caps.learn(q.key, query).then(
      (features) => done(id, features !== null),
      (e) => {
        failed(`capabilities ${q.key}`)(e);
        done(id, false);
      },
    );
    return true;
  }, 60);

  host.events.on("session/closed", (session) => {
    for (const [id, q] of queries) if (q.session === session) done(id, false);
  });
}
