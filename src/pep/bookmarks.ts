// Bookmarks (XEP-0402) as one list however a client keeps them: the PEP node
// urn:xmpp:bookmarks:1 (an item per room, its id the room's JID) holds them, and the two older
// ways are views of it (XEP-0402 §5.3): private XML storage of storage:bookmarks (XEP-0049,
// `#compat`) and the PEP node storage:bookmarks with one item "current" (XEP-0048 over PEP,
// `#compat-pep`). Writing either older form replaces the list: bookmarks it lacks are retracted,
// new or changed ones published, each notified as XEP-0402 says; a change of the list is notified
// on the older node too, to the owner's resources that asked for it.
import type { Host } from "../core/host.ts";
import { logFailure } from "../core/failure.ts";
import type { Jid } from "../jid/jid.ts";
import { parseJid } from "../jid/jid.ts";
import { type Element, x } from "../xml/element.ts";
import { NS } from "../xml/ns.ts";
import { dataForm } from "../xml/data_form.ts";
import type { PepService } from "./service.ts";
import { PubsubError } from "./pubsub_error.ts";

/** The configuration XEP-0402 §3 asks bookmarks to be published with. */
const BOOKMARK_OPTIONS = dataForm("submit", NS.pubsubPublishOptions, [
  { var: "pubsub#persist_items", values: ["true"] },
  { var: "pubsub#max_items", values: ["max"] },
  { var: "pubsub#send_last_published_item", values: ["never"] },
  { var: "pubsub#access_model", values: ["whitelist"] },
]);

const isTrue = (v: string | undefined) => v === "true" || v === "1";

/** The storage:bookmarks element listing the bookmarks (XEP-0048). */
function legacyList(items: [string, Element][]): Element {
  return x(
    "storage",
    { xmlns: NS.legacyBookmarks },
    ...items.map(([jid, c]) => {
      const nick = c.childText("nick");
      const password = c.childText("password");
      return x(
        "conference",
        { jid, name: c.attrs.name, autojoin: isTrue(c.attrs.autojoin) ? "true" : "false" },
        nick !== undefined && x("nick", {}, nick),
        password !== undefined && x("password", {}, password),
      );
    }),
  );
}

/** What the older forms say of a bookmark: two that say the same are the same to them. */
function legacyFields(c: Element): string {
  return JSON.stringify([
    c.attrs.name ?? null,
    isTrue(c.attrs.autojoin),
    c.childText("nick") ?? null,
    c.childText("password") ?? null,
  ]);
}

/** The XEP-0402 items a storage:bookmarks element stands for, by room JID. */
function fromLegacy(storage: Element): Map<string, Element> {
  const out = new Map<string, Element>();
  for (const c of storage.elements("conference")) {
    const jid = parseJid(c.attrs.jid ?? "");
    if (!jid) throw new PubsubError("bad-request", undefined, "a bookmark without a valid jid");
    const nick = c.childText("nick");
    const password = c.childText("password");
    out.set(
      jid.bare,
      x(
        "conference",
        {
          xmlns: NS.bookmarks,
          name: c.attrs.name,
          autojoin: isTrue(c.attrs.autojoin) ? "true" : undefined,
        },
        nick !== undefined && x("nick", {}, nick),
        password !== undefined && x("password", {}, password),
      ),
    );
  }
  return out;
}

export function bookmarksCompat(host: Host, service: PepService): void {
  host.accountFeatures.add(`${NS.bookmarks}#compat`).add(`${NS.bookmarks}#compat-pep`);

  const list = async (owner: Jid): Promise<[string, Element][]> => {
    try {
      return await service.items(owner, NS.bookmarks, owner);
    } catch (e) {
      if (e instanceof PubsubError && e.condition === "item-not-found") return [];
      throw e;
    }
  };

  /** Accounts whose list is being replaced: told once, at the end. */
  const replacing = new Set<string>();

  /**
   * Makes the XEP-0402 list what a storage:bookmarks element says: only bookmarks that differ in
   * what the older forms say are published again, keeping what else a XEP-0402 client put in
   * them (<extensions/>).
   */
  const replace = async (owner: Jid, storage: Element): Promise<void> => {
    replacing.add(owner.bare);
    try {
      await write(owner, storage);
    } finally {
      replacing.delete(owner.bare);
    }
    tell({ owner, node: NS.bookmarks });
  };

  const write = async (owner: Jid, storage: Element): Promise<void> => {
    const wanted = fromLegacy(storage);
    const have = new Map(await list(owner));
    // A node a client created otherwise is kept as it is (no precondition to fail).
    const form = (await service.nodes.load(owner)).nodes.has(NS.bookmarks)
      ? undefined
      : BOOKMARK_OPTIONS;
    const gone = [...have.keys()].filter((jid) => !wanted.has(jid));
    if (gone.length) await service.retract(owner, NS.bookmarks, gone, true);
    for (const [jid, conference] of wanted) {
      const old = have.get(jid);
      if (old && legacyFields(old) === legacyFields(conference)) continue;
      const extensions = old?.child("extensions");
      if (extensions) conference.append(extensions);
      await service.publish(owner, NS.bookmarks, conference, { id: jid, form });
    }
  };

  service.virtual.set(NS.legacyBookmarks, {
    items: async (owner) => [["current", legacyList(await list(owner))]],
    publish: (owner, payload) => {
      if (payload.name !== "storage" || payload.attrs.xmlns !== NS.legacyBookmarks) {
        return Promise.reject(new PubsubError("bad-request", "invalid-payload"));
      }
      return replace(owner, payload);
    },
  });

  host.events.on("private/iq", ({ iq, item }) => {
    if (item.name !== "storage" || item.attrs.xmlns !== NS.legacyBookmarks) return false;
    const owner = iq.to;
    const answer = iq.type === "set"
      ? replace(owner, item).then(() => iq.reply())
      : list(owner).then((items) => iq.reply(x("query", { xmlns: NS.private }, legacyList(items))));
    answer.catch((e) => {
      if (e instanceof PubsubError) return e.answer(iq);
      logFailure(`bookmarks of ${owner.bare}`, e);
      iq.error("internal-server-error");
    });
    return true;
  });

  // A change of the list, told on the older node to the owner's resources that want it there.
  const tell = ({ owner, node }: { owner: Jid; node: string }) => {
    if (node !== NS.bookmarks || replacing.has(owner.bare)) return;
    list(owner).then(
      (items) => service.notifyOwner(owner, NS.legacyBookmarks, "current", legacyList(items)),
      (e) => logFailure(`bookmarks of ${owner.bare}`, e),
    );
  };
  service.events.on("published", tell);
  service.events.on("retracted", tell);
}
