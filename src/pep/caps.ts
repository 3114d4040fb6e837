// Entity capabilities (XEP-0115): what a client's `ver` says it supports, learned once per `ver`
// cluster-wide. A `ver` is the hash of a feature set, so what it maps to never changes: once its
// hash is verified (§5.4) it is kept for good, in the store (every node reads it) and in a
// bounded per-node memory. A `ver` that does not verify is never kept: the resource that sent it
// gets no notifications by interest. PEP reads `NODE+notify` features from here (§4 of XEP-0163).
import { createHash } from "node:crypto";
import { LRUCache } from "lru-cache";
import type { Element } from "../xml/element.ts";
import { NS } from "../xml/ns.ts";
import type { Store } from "../storage/store.ts";
import { STORES } from "../storage/store.ts";
import type { Session } from "../router/sessions.ts";
import { formValues } from "../xml/data_form.ts";

/** XEP-0115 hash names (IANA) and node:crypto's names for them. */
const HASHES: Record<string, string> = {
  "sha-1": "sha1",
  "sha-224": "sha224",
  "sha-256": "sha256",
  "sha-384": "sha384",
  "sha-512": "sha512",
};

/** Vers kept in memory per node (each a few hundred bytes; clients share a handful of them). */
const MEMORY = 10_000;
const MEMORY_CHARS = 8 * 1024 * 1024;
/** Most features of a ver kept, and most characters in all: a real client has a few dozen. */
const MAX_FEATURES = 500;
const MAX_CHARS = 32_768;

/** The node attribute to ask disco#info about for a presence's capabilities ("node#ver"). */
export function capsNode(presence: Element): string {
  const c = presence.child("c", NS.caps)!;
  return `${c.attrs.node}#${c.attrs.ver}`;
}

/**
 * The verification string of a disco#info result (XEP-0115 §5.1) hashed with `hash`, or null when
 * the result is not one a ver can be computed from (duplicate identities or features, or extended
 * information without a single FORM_TYPE, §5.4 3.3–3.6).
 */
export function verOf(query: Element, hash: string): string | null {
  const algorithm = HASHES[hash];
  if (!algorithm) return null;
  const identities = query.elements("identity").map((i) =>
    `${i.attrs.category ?? ""}/${i.attrs.type ?? ""}/${i.attrs["xml:lang"] ?? ""}/${
      i.attrs.name ?? ""
    }`
  );
  const features = query.elements("feature").map((f) => f.attrs.var ?? "");
  if (new Set(identities).size !== identities.length) return null;
  if (new Set(features).size !== features.length) return null;
  let s = "";
  for (const i of identities.sort(byteOrder)) s += i + "<";
  for (const f of features.sort(byteOrder)) s += f + "<";
  const forms: [string, string][] = [];
  for (const form of query.elements("x", NS.dataForms)) {
    const values = formValues(form);
    const formType = values.get("FORM_TYPE");
    if (!formType || formType.length !== 1) {
      if (formType === undefined) continue; // ignored without a FORM_TYPE (§5.4 3.6)
      return null;
    }
    let f = formType[0] + "<";
    const vars = [...values.keys()].filter((v) => v !== "FORM_TYPE").sort(byteOrder);
    for (const v of vars) {
      f += v + "<";
      for (const value of values.get(v)!.sort(byteOrder)) f += value + "<";
    }
    forms.push([formType[0], f]);
  }
  if (new Set(forms.map(([t]) => t)).size !== forms.length) return null;
  for (const [, f] of forms.sort((a, b) => byteOrder(a[0], b[0]))) s += f;
  return createHash(algorithm).update(s, "utf8").digest("base64");
}

function byteOrder(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Verified capabilities by key: in memory, then in the store shared by every node. */
export class Caps {
  readonly #memory = new LRUCache<string, ReadonlySet<string>>({
    max: MEMORY,
    // Bounded in characters too: vers minted by a client are each up to MAX_CHARS.
    maxSize: MEMORY_CHARS,
    sizeCalculation: (features) => {
      let n = 1;
      for (const f of features) n += f.length;
      return n;
    },
  });

  constructor(readonly store: Store) {}

  /** The features of a key known on this node (undefined: not in memory, maybe in the store). */
  known(key: string): ReadonlySet<string> | undefined {
    return this.#memory.get(key);
  }

  /** The features of the session's current presence, if known here. */
  of(session: Session): ReadonlySet<string> | undefined {
    const key = session.caps;
    return key === undefined ? undefined : this.#memory.get(key);
  }

  /** Brings what the store knows of these keys into memory; the keys it does not know. */
  async load(keys: Iterable<string>): Promise<string[]> {
    const wanted = [...new Set(keys)].filter((k) => !this.#memory.has(k));
    const kv = this.store.keyval<string[]>(STORES.caps);
    const found = await Promise.all(wanted.map((k) => kv.get(k, "")));
    const missing: string[] = [];
    wanted.forEach((k, i) => {
      const features = found[i];
      if (features) this.#memory.set(k, new Set(features));
      else missing.push(k);
    });
    return missing;
  }

  /**
   * Keeps the features of a disco#info answer for `key` if its hash verifies (and it is no larger
   * than a client's); the features, or null when it was not kept.
   */
  async learn(key: string, query: Element): Promise<ReadonlySet<string> | null> {
    const [hash, ver] = key.split(" ");
    if (!(hash in HASHES)) return null;
    const features = query.elements("feature").map((f) => f.attrs.var ?? "").sort(byteOrder);
    if (features.length > MAX_FEATURES || features.join("").length > MAX_CHARS) return null;
    if (verOf(query, hash) !== ver) return null;
    // The first writer wins; any writer wrote the same set (the hash says so).
    await this.store.keyval<string[]>(STORES.caps).add(key, "", features);
    const set = new Set(features);
    this.#memory.set(key, set);
    return set;
  }
}
