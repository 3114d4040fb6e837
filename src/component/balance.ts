// Which instance of a component gets a stanza. Rendezvous (highest random weight) hashing over the
// live instances: each (instance, key) pair gets a score and the highest wins. When an instance
// leaves, only the keys it won move; when one joins, it wins about 1/n of the keys and nothing
// else moves. The score depends only on the instance id and the key, so every cluster node
// computes the same answer.
import type { Jid } from "../jid/jid.ts";
import type { ComponentConfig } from "../config/schema.ts";

export type BalanceMode = ComponentConfig["balance"];

/** The key a stanza is balanced on, or null for random placement. */
export function balanceKey(mode: BalanceMode, from: Jid, to: Jid): string | null {
  switch (mode) {
    case "bare_source":
      return from.bare;
    case "source":
      return from.full;
    case "bare_destination":
      return to.bare;
    case "destination":
      return to.full;
    case "random":
      return null;
  }
}

/** FNV-1a over UTF-16 code units, finished with murmur3's avalanche so close inputs spread out. */
export function score(instance: string, key: string): number {
  let h = 0x811c9dc5;
  const s = instance + "\u0000" + key;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The instance id that wins `key` among `ids` (ties, practically impossible, go to the lower id). */
export function pick(ids: Iterable<string>, key: string): string | undefined {
  let best: string | undefined;
  let bestScore = -1;
  for (const id of ids) {
    const s = score(id, key);
    if (s > bestScore || (s === bestScore && best !== undefined && id < best)) {
      best = id;
      bestScore = s;
    }
  }
  return best;
}
