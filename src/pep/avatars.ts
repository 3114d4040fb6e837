// Avatars both ways (XEP-0398): a vCard stored with a PHOTO publishes it as a User Avatar
// (XEP-0084: the image in urn:xmpp:avatar:data under its SHA-1, then its metadata), and a
// metadata publish whose image is in the data node becomes the vCard's PHOTO (a metadata without
// info, the PHOTO removed). The account's broadcast presence carries the current avatar's hash
// (XEP-0153 vcard-temp:x:update), added by the server unless the client put one; the hash is
// cached per account (every node drops it before a change is answered).
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { AccountCache } from "../core/account_cache.ts";
import type { Host, OutboundEvent } from "../core/host.ts";
import { logFailure } from "../core/failure.ts";
import type { Jid } from "../jid/jid.ts";
import { STORES } from "../storage/store.ts";
import { type Element, x } from "../xml/element.ts";
import { NS } from "../xml/ns.ts";
import { parseStanza } from "../xml/parse_string.ts";
import type { PepService } from "./service.ts";

/** A vCard's PHOTO as an image: its bytes (base64), type and SHA-1 (hex). */
interface Photo {
  base64: string;
  type: string;
  bytes: number;
  sha1: string;
}

function photoOf(vcard: Element): Photo | null {
  const photo = vcard.child("PHOTO");
  const base64 = photo?.childText("BINVAL")?.replace(/\s+/g, "");
  if (!photo || !base64) return null;
  const bytes = Buffer.from(base64, "base64");
  return {
    base64,
    type: photo.childText("TYPE")?.trim() || "image/png",
    bytes: bytes.length,
    sha1: createHash("sha1").update(bytes).digest("hex"),
  };
}

/** The avatar id a metadata item names (its first info), or null for no avatar. */
function metadataId(metadata: Element): string | null {
  return metadata.child("info")?.attrs.id ?? null;
}

export function avatarConversion(host: Host, service: PepService): void {
  const { store, caches } = host.server;
  host.accountFeatures.add(NS.pepVcardConversion);
  const vcards = store.keyval<string>(STORES.vcard);

  /** The account's current avatar hash, or null for none. */
  const hashes = new AccountCache<string | null>(
    caches,
    `avatar ${host.domain}`,
    async (account) => {
      const [last] = await service.nodes.items(NS.avatarMetadata).list(
        account.local,
        account.domain,
        { last: 1 },
      );
      const metadata = last && parseStanza(last[1].xml);
      return metadata ? metadataId(metadata) : null;
    },
  );
  const hashChanged = async (account: Jid, hash: string | null) => {
    hashes.set(account.bare, hash);
    await hashes.changed(account);
  };

  // vCard → avatar: publish the PHOTO unless it is the avatar already.
  host.events.on("vcard/set", (ev) => {
    const { account, vcard } = ev;
    const photo = photoOf(vcard);
    ev.done = (async () => {
      const current = await hashes.load(account);
      if ((photo?.sha1 ?? null) === current) return;
      if (photo) {
        await service.publish(
          account,
          NS.avatarData,
          x("data", { xmlns: NS.avatarData }, photo.base64),
          { id: photo.sha1 },
        );
      }
      const info = photo
        ? x("info", { id: photo.sha1, bytes: String(photo.bytes), type: photo.type })
        : undefined;
      await service.publish(
        account,
        NS.avatarMetadata,
        x("metadata", { xmlns: NS.avatarMetadata }, info),
        { id: photo?.sha1 ?? "none" },
      );
    })().catch((e) => logFailure(`avatar of ${account.bare} from its vCard`, e));
  });

  // Avatar → vCard: the image the metadata names, unless the vCard has it already.
  service.events.on("published", ({ owner, node, payload }) => {
    if (node !== NS.avatarMetadata) return;
    const id = metadataId(payload);
    const type = payload.child("info")?.attrs.type ?? "image/png";
    (async () => {
      await hashChanged(owner, id);
      const stored = await vcards.get(owner.local, owner.domain);
      const vcard = (stored && parseStanza(stored)) || x("vCard", { xmlns: NS.vcard });
      if ((photoOf(vcard)?.sha1 ?? null) === id) return;
      let photo: Element | undefined;
      if (id !== null) {
        const [data] = await service.nodes.items(NS.avatarData).list(owner.local, owner.domain, {
          keys: [id],
        });
        const image = data && parseStanza(data[1].xml)?.text();
        if (!image) return; // a metadata naming an image stored elsewhere (a URL): not converted
        photo = x("PHOTO", {}, x("TYPE", {}, type), x("BINVAL", {}, image));
      }
      const children = vcard.children.filter((c) => typeof c === "string" || c.name !== "PHOTO");
      const updated = x(vcard.name, { ...vcard.attrs }, ...children, photo);
      await vcards.set(owner.local, owner.domain, updated.toString());
    })().catch((e) => logFailure(`vCard of ${owner.bare} from its avatar`, e));
  });

  host.events.on("account/deleted", (account) => {
    hashChanged(account, null).catch((e) => logFailure(`avatar of ${account.bare}`, e));
  });

  host.events.on("session/bound", (s) => {
    if (s.jid.domain === host.domain) {
      hashes.load(s.jid).catch((e) => logFailure(`avatar of ${s.jid.bare}`, e));
    }
  });

  // XEP-0153: the hash in the account's broadcast presence. Not known here yet: the presence
  // waits for it, then goes on (once).
  const stamped = new WeakSet<Element>();
  host.events.on("stanza/out", (ev: OutboundEvent) => {
    const { stanza } = ev;
    if (stanza.name !== "presence" || !ev.toAbsent || stanza.attrs.type !== undefined) return false;
    if (stamped.has(stanza) || stanza.child("x", NS.vcardUpdate)) return false;
    stamped.add(stanza);
    const bare = ev.from.bare;
    const stamp = (hash: string | null | undefined) => {
      if (hash) stanza.append(x("x", { xmlns: NS.vcardUpdate }, x("photo", {}, hash)));
    };
    const hash = hashes.cached(bare);
    if (hash !== undefined) {
      stamp(hash);
      return false;
    }
    ev.stored = hashes.load(ev.from.toBare()).then(stamp, (e) => {
      logFailure(`avatar of ${bare}`, e);
    }).then(() => {
      // What the presence waits for now is its second pass (not this promise itself).
      ev.stored = undefined;
      return host.dispatchOutbound(ev);
    });
    return true;
  }, 70);
}
