// Roles and affiliations (XEP-0045 §5): what each may do, as pure functions of plain values.
import type { RoomConfig } from "./room_config.ts";

export type Role = "moderator" | "participant" | "visitor" | "none";
export type Affiliation = "owner" | "admin" | "member" | "outcast" | "none";

export const ROLES: readonly Role[] = ["moderator", "participant", "visitor", "none"];
export const AFFILIATIONS: readonly Affiliation[] = ["owner", "admin", "member", "outcast", "none"];

const RANK: Record<Affiliation, number> = { owner: 4, admin: 3, member: 2, none: 1, outcast: 0 };

export function affiliationRank(a: Affiliation): number {
  return RANK[a];
}

/** The role an occupant gets on entering (§5.1.2). */
export function defaultRole(aff: Affiliation, c: RoomConfig): Role {
  if (aff === "owner" || aff === "admin") return "moderator";
  if (c.moderated && aff !== "member") return "visitor";
  return "participant";
}

/** Whether an occupant with `role` may send a private message under the room's policy. */
export function mayPrivateMessage(role: Role, c: RoomConfig): boolean {
  switch (c.allowPm) {
    case "anyone":
      return true;
    case "participants":
      return role === "participant" || role === "moderator";
    case "moderators":
      return role === "moderator";
    case "none":
      return false;
  }
}
