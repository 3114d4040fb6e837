// A room's configuration (XEP-0045 §10.2): plain data, its muc#roomconfig form both ways, and the
// disco features it implies.
import type { Element } from "../xml/element.ts";
import { dataForm, formBoolean, formValues } from "../xml/data_form.ts";
import { NS } from "../xml/ns.ts";
import type { MucConfig } from "../config/schema.ts";

export const WHOIS = ["moderators", "anyone"] as const;
export const ALLOW_PM = ["anyone", "participants", "moderators", "none"] as const;

export interface RoomConfig {
  name: string;
  description: string;
  persistent: boolean;
  public: boolean;
  membersOnly: boolean;
  moderated: boolean;
  passwordProtected: boolean;
  password: string;
  /** Who sees occupants' real JIDs: moderators (semi-anonymous) or anyone (non-anonymous). */
  whois: (typeof WHOIS)[number];
  maxUsers: number;
  /** Participants may change the subject (moderators always may). */
  changeSubject: boolean;
  /** Participants may invite (moderators and admins always may). */
  allowInvites: boolean;
  allowPm: (typeof ALLOW_PM)[number];
  historyLength: number;
  /** Its messages are archived (XEP-0313), while it is persistent. */
  archiving: boolean;
}

/** A new room's configuration; `archiving` is the service's default (`mam.rooms`). */
export function defaultRoomConfig(svc: MucConfig, archiving = false): RoomConfig {
  return {
    name: "",
    description: "",
    persistent: false,
    public: true,
    membersOnly: false,
    moderated: false,
    passwordProtected: false,
    password: "",
    whois: "moderators",
    maxUsers: svc.max_occupants,
    changeSubject: false,
    allowInvites: false,
    allowPm: "anyone",
    historyLength: Math.min(svc.history, svc.max_history),
    archiving,
  };
}

const F = "muc#roomconfig_";

/**
 * The choices offered for muc#roomconfig_maxusers: steps of 1-2-5 from 5 up to the service's cap,
 * the cap itself and the room's current value (as ejabberd offers a fixed list below its cap).
 */
export function maxUsersOptions(current: number, max: number): number[] {
  const steps = new Set([current, max]);
  for (let decade = 1; decade * 5 < max; decade *= 10) {
    for (const n of [5 * decade, 10 * decade, 20 * decade]) if (n < max) steps.add(n);
  }
  return [...steps].sort((a, b) => a - b);
}
const bool = (b: boolean) => [b ? "1" : "0"];

/** The configuration form; `archive`: the service archives rooms (the field is offered). */
export function configForm(c: RoomConfig, svc: MucConfig, archive = false): Element {
  return dataForm("form", NS.mucRoomConfig, [
    { var: F + "roomname", type: "text-single", label: "Name", values: [c.name] },
    { var: F + "roomdesc", type: "text-single", label: "Description", values: [c.description] },
    { var: F + "persistentroom", type: "boolean", label: "Persistent", values: bool(c.persistent) },
    { var: F + "publicroom", type: "boolean", label: "Listed publicly", values: bool(c.public) },
    { var: F + "membersonly", type: "boolean", label: "Members only", values: bool(c.membersOnly) },
    { var: F + "moderatedroom", type: "boolean", label: "Moderated", values: bool(c.moderated) },
    {
      var: F + "passwordprotectedroom",
      type: "boolean",
      label: "Password required",
      values: bool(c.passwordProtected),
    },
    { var: F + "roomsecret", type: "text-private", label: "Password", values: [c.password] },
    {
      var: F + "whois",
      type: "list-single",
      label: "Who may see real JIDs",
      options: [...WHOIS],
      values: [c.whois],
    },
    {
      // list-single as registered (XEP-0045 §15.5.3); any other number up to the cap is accepted.
      var: F + "maxusers",
      type: "list-single",
      label: `Maximum occupants (at most ${svc.max_occupants})`,
      options: maxUsersOptions(c.maxUsers, svc.max_occupants).map(String),
      values: [String(c.maxUsers)],
    },
    {
      var: F + "changesubject",
      type: "boolean",
      label: "Participants may change the subject",
      values: bool(c.changeSubject),
    },
    {
      var: F + "allowinvites",
      type: "boolean",
      label: "Participants may invite",
      values: bool(c.allowInvites),
    },
    {
      var: F + "allowpm",
      type: "list-single",
      label: "Who may send private messages",
      options: [...ALLOW_PM],
      values: [c.allowPm],
    },
    {
      var: "muc#maxhistoryfetch",
      type: "text-single",
      label: `Messages of history (at most ${svc.max_history})`,
      values: [String(c.historyLength)],
    },
    ...(archive
      ? [{
        var: F + "enablearchiving",
        type: "boolean",
        label: "Archive messages (persistent rooms)",
        values: bool(c.archiving),
      }]
      : []),
  ], "Room configuration");
}

/**
 * Applies a submitted muc#roomconfig form to a copy of `c`. Fields left out keep their values (an
 * empty form is the instant room); a bad value is an error message for bad-request/not-acceptable.
 */
export function applyConfigForm(
  c: RoomConfig,
  form: Element,
  svc: MucConfig,
): RoomConfig | string {
  const values = formValues(form);
  const formType = values.get("FORM_TYPE")?.[0];
  if (formType !== undefined && formType !== NS.mucRoomConfig) return "unknown FORM_TYPE";
  const out = { ...c };
  const one = (name: string) => values.get(name)?.[0];
  const flag = (name: string, key: keyof RoomConfig) => {
    const v = one(F + name);
    if (v === undefined) return undefined;
    const b = formBoolean(v);
    if (b === undefined) return `${F + name} is not a boolean`;
    (out as Record<string, unknown>)[key] = b;
  };
  const choice = (name: string, options: readonly string[], key: keyof RoomConfig) => {
    const v = one(F + name);
    if (v === undefined) return undefined;
    if (!options.includes(v)) return `${F + name}: unknown value`;
    (out as Record<string, unknown>)[key] = v;
  };
  /** A whole number, "none" meaning the most allowed; null when it is neither. */
  const number = (name: string, max: number) => {
    const v = one(name);
    if (v === undefined) return undefined;
    const n = v === "none" ? max : Number(v);
    return Number.isInteger(n) && n >= 0 ? n : null;
  };
  const problem = flag("persistentroom", "persistent") ?? flag("publicroom", "public") ??
    flag("membersonly", "membersOnly") ?? flag("moderatedroom", "moderated") ??
    flag("passwordprotectedroom", "passwordProtected") ??
    flag("changesubject", "changeSubject") ?? flag("allowinvites", "allowInvites") ??
    flag("enablearchiving", "archiving") ??
    choice("whois", WHOIS, "whois") ?? choice("allowpm", ALLOW_PM, "allowPm");
  if (problem) return problem;
  out.name = one(F + "roomname") ?? out.name;
  out.description = one(F + "roomdesc") ?? out.description;
  out.password = one(F + "roomsecret") ?? out.password;
  // Some clients only send the secret: a password given alone protects the room.
  if (!values.has(F + "passwordprotectedroom") && one(F + "roomsecret")) {
    out.passwordProtected = true;
  }
  const maxUsers = number(F + "maxusers", svc.max_occupants);
  if (maxUsers === null || maxUsers === 0) return `${F}maxusers must be a positive number`;
  if (maxUsers !== undefined && maxUsers > svc.max_occupants) {
    return `${F}maxusers may be at most ${svc.max_occupants}`;
  }
  if (maxUsers !== undefined) out.maxUsers = maxUsers;
  const history = number(
    values.has("muc#maxhistoryfetch") ? "muc#maxhistoryfetch" : F + "historylength",
    svc.max_history,
  );
  if (history === null) return "muc#maxhistoryfetch must be a number";
  if (history !== undefined) out.historyLength = Math.min(history, svc.max_history);
  if (out.passwordProtected && out.password === "") return "a password-protected room needs one";
  return out;
}

/**
 * disco#info features (XEP-0045 §6.4) describing the configuration; `archiving`: the room's
 * messages are archived now.
 */
export function roomFeatures(c: RoomConfig, archiving = false): string[] {
  return [
    NS.muc,
    NS.mucSelfPing,
    NS.occupantId,
    ...(archiving ? [NS.mam, NS.mamExtended, NS.sid, NS.fulltext, NS.moderate] : []),
    c.public ? "muc_public" : "muc_hidden",
    c.persistent ? "muc_persistent" : "muc_temporary",
    c.membersOnly ? "muc_membersonly" : "muc_open",
    c.moderated ? "muc_moderated" : "muc_unmoderated",
    c.passwordProtected ? "muc_passwordprotected" : "muc_unsecured",
    c.whois === "anyone" ? "muc_nonanonymous" : "muc_semianonymous",
  ];
}
