// A room's message archive (XEP-0313 §6 on MUC): written by the node running the room, as it
// broadcasts, and read from wherever the room runs next (the shared store). A room message it
// archives carries the room's stanza id (XEP-0359) live, in the room's history and in its entry.
// A message an occupant sends again (its origin-id the same) gets the same id, so it lands on
// the entry already there. What MUC makes of it (who may query, moderation) is in src/muc.
import type { Element } from "../xml/element.ts";
import type { Jid } from "../jid/jid.ts";
import type { ArchiveItem, ArchiveStore } from "../storage/store.ts";
import { KEPT_LIMITS, parseStanza } from "../xml/parse_string.ts";
import type { ArchiveWriter } from "./archive_writer.ts";
import { archivedText } from "./archivable.ts";
import { derivedStanzaId, newStanzaId, stamped } from "./stanza_ids.ts";

export class RoomArchive {
  constructor(
    readonly writer: ArchiveWriter,
    readonly store: ArchiveStore,
    readonly maxPage: number,
    /** Whether new rooms archive (`mam.rooms`). */
    readonly byDefault: boolean,
  ) {}

  /**
   * A room message about to be broadcast, stamped with the room's id and archived when it is
   * worth keeping; itself otherwise. `key` names it for a resend (the sender and its origin-id).
   */
  record(room: Jid, msg: Element, sender: Jid, key: string | undefined): Element {
    const text = archivedText(msg, true);
    if (text === undefined) return msg;
    const id = key === undefined ? newStanzaId() : derivedStanzaId(`${room.bare}\0${key}`);
    const out = stamped(msg, room.bare, id);
    this.writer.add({
      user: room.local,
      host: room.domain,
      item: { id, at: Date.now(), with: sender.full, payload: out.toString(), text },
    });
    return out;
  }

  /** The archived message with this id, and when it was archived. */
  async find(room: Jid, id: string): Promise<{ item: ArchiveItem; stanza: Element } | undefined> {
    const page = await this.store.query(room.local, room.domain, { ids: [id], max: 1 });
    const item = page.items[0];
    const stanza = item && parseStanza(item.payload, KEPT_LIMITS);
    return stanza ? { item, stanza } : undefined;
  }

  /** Replaces an archived message (a moderated one, by its tombstone); false when not there. */
  replace(room: Jid, id: string, tombstone: Element): Promise<boolean> {
    return this.store.replace(room.local, room.domain, id, tombstone.toString());
  }

  /** Everything a destroyed room archived. */
  forget(room: Jid): Promise<number> {
    return this.store.deleteOwner(room.local, room.domain);
  }
}
