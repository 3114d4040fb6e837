// Who may read a PEP node (XEP-0060 §4.5 access models, as XEP-0163 applies them to an account's
// contacts): the owner always; otherwise as the node's access model and affiliations say.
import { hasFrom, type RosterItem } from "../storage/store.ts";
import type { NodeRecord } from "./nodes.ts";
import { PubsubError } from "./pubsub_error.ts";

/**
 * Why `reader` (a bare JID) may not read the owner's node, or null when it may. `item` is the
 * owner's roster item for the reader (null: none).
 */
export function readRefusal(
  record: NodeRecord,
  owner: string,
  reader: string,
  item: RosterItem | null,
): PubsubError | null {
  if (reader === owner) return null;
  const affiliation = record.affiliations[reader];
  if (affiliation === "outcast") return new PubsubError("forbidden");
  switch (record.config.access_model) {
    case "open":
      return null;
    case "presence":
      return item && hasFrom(item.subscription)
        ? null
        : new PubsubError("not-authorized", "presence-subscription-required");
    case "roster": {
      const allowed = record.config.roster_groups_allowed;
      return item && item.groups.some((g) => allowed.includes(g))
        ? null
        : new PubsubError("not-authorized", "not-in-roster-group");
    }
    case "whitelist":
      return affiliation === "member" || affiliation === "publisher"
        ? null
        : new PubsubError("not-allowed", "closed-node");
  }
}
