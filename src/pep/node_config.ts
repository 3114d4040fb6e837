// A PEP node's configuration (XEP-0060 §16.4 pubsub#node_config, the fields PEP needs): its
// defaults, the form an owner reads and submits, and publish-options (§7.1.5), which create a
// node with them or are preconditions on an existing one.
import { dataForm, formBoolean, formValues } from "../xml/data_form.ts";
import type { Element } from "../xml/element.ts";
import { NS } from "../xml/ns.ts";
import { PubsubError } from "./pubsub_error.ts";

export const ACCESS_MODELS = ["presence", "open", "roster", "whitelist"] as const;
export type AccessModel = (typeof ACCESS_MODELS)[number];
const SEND_LAST = ["never", "on_sub", "on_sub_and_presence"] as const;
export type SendLast = (typeof SEND_LAST)[number];

export interface NodeConfig {
  access_model: AccessModel;
  persist_items: boolean;
  /** Items kept: a number, or "max" (the server's `pep.max_items`). */
  max_items: number | "max";
  send_last_published_item: SendLast;
  notify_retract: boolean;
  /** Subscribers are told when the node is deleted. */
  notify_delete: boolean;
  /** With the roster access model: the owner's roster groups whose contacts may read. */
  roster_groups_allowed: string[];
  title: string;
}

/** A PEP node's configuration until its owner says otherwise (as Prosody's and ejabberd's). */
export const DEFAULT_CONFIG: Readonly<NodeConfig> = {
  access_model: "presence",
  persist_items: true,
  max_items: 1,
  send_last_published_item: "on_sub_and_presence",
  // Told, as clients expect of PEP (Conversations asks for both in its publish-options).
  notify_retract: true,
  notify_delete: true,
  roster_groups_allowed: [],
  title: "",
};

/** How many items a node keeps, given the server's limit. */
export function itemsKept(config: NodeConfig, limit: number): number {
  return config.max_items === "max" ? limit : Math.min(config.max_items, limit);
}

type Field = {
  [K in keyof NodeConfig]: {
    key: K;
    type: string;
    options?: readonly string[];
    read(values: string[], max: number): NodeConfig[K] | undefined;
    write(value: NodeConfig[K]): string[];
  };
}[keyof NodeConfig];

const one = (values: string[]) => values.length === 1 ? values[0] : undefined;
const choice = <T extends string>(options: readonly T[]) => (values: string[]) => {
  const v = one(values);
  return options.includes(v as T) ? v as T : undefined;
};

const FIELDS: Field[] = [
  {
    key: "access_model",
    type: "list-single",
    options: ACCESS_MODELS,
    read: choice(ACCESS_MODELS),
    write: (v) => [v],
  },
  {
    key: "persist_items",
    type: "boolean",
    read: (v) => formBoolean(one(v)),
    write: (v) => [v ? "true" : "false"],
  },
  {
    key: "max_items",
    type: "text-single",
    read: (values, max) => {
      const v = one(values);
      if (v === "max") return "max";
      if (v === undefined || !/^[0-9]{1,9}$/.test(v) || Number(v) < 1) return undefined;
      return Math.min(Number(v), max);
    },
    write: (v) => [String(v)],
  },
  {
    key: "send_last_published_item",
    type: "list-single",
    options: SEND_LAST,
    read: choice(SEND_LAST),
    write: (v) => [v],
  },
  {
    key: "notify_retract",
    type: "boolean",
    read: (v) => formBoolean(one(v)),
    write: (v) => [v ? "true" : "false"],
  },
  {
    key: "notify_delete",
    type: "boolean",
    read: (v) => formBoolean(one(v)),
    write: (v) => [v ? "true" : "false"],
  },
  {
    key: "roster_groups_allowed",
    type: "list-multi",
    read: (v) => v.length <= 100 && v.every((g) => g.length <= 1024) ? v : undefined,
    write: (v) => v,
  },
  {
    key: "title",
    type: "text-single",
    read: (v) => {
      const title = one(v) ?? "";
      return title.length <= 1024 ? title : undefined;
    },
    write: (v) => [v],
  },
];

/**
 * Fields of XEP-0060's node configuration this service does not vary: a form may give them with
 * the value it has (Conversations' publish-options do), never another.
 */
const FIXED: Record<string, (value: string | undefined) => boolean> = {
  "pubsub#deliver_notifications": (v) => formBoolean(v) === true,
  "pubsub#deliver_payloads": (v) => formBoolean(v) === true,
  "pubsub#notify_config": (v) => formBoolean(v) === false,
  "pubsub#notify_sub": (v) => formBoolean(v) === false,
  "pubsub#presence_based_delivery": (v) => formBoolean(v) === false,
  "pubsub#purge_offline": (v) => formBoolean(v) === false,
  "pubsub#publish_model": (v) => v === "publishers",
  "pubsub#notification_type": (v) => v === "headline",
  "pubsub#itemreply": (v) => v === "owner" || v === "publisher",
  // The payload's namespace and size are whatever the owner publishes (within pep limits).
  "pubsub#type": () => true,
  "pubsub#max_payload_size": (v) => v !== undefined && /^[0-9]{1,9}$/.test(v),
};

/** The pubsub#node_config form of a configuration (to fill in, or as it is). */
export function configForm(config: NodeConfig): Element {
  return dataForm(
    "form",
    NS.pubsubNodeConfig,
    FIELDS.map((f) => ({
      var: `pubsub#${f.key}`,
      type: f.type,
      values: (f.write as (v: unknown) => string[])(config[f.key]),
      options: f.options ? [...f.options] : undefined,
    })),
  );
}

/**
 * The configuration a submitted form makes of `base`. A field this service does not know, or a
 * value it does not accept, is refused: as a configuration, with not-acceptable; as
 * publish-options (`preconditions`), with precondition-not-met (XEP-0060 §7.1.5).
 */
export function submitted(
  form: Element,
  base: Readonly<NodeConfig>,
  maxItems: number,
  preconditions = false,
): NodeConfig {
  const refuse = () =>
    preconditions
      ? new PubsubError("conflict", "precondition-not-met")
      : new PubsubError("not-acceptable");
  const config = { ...base, roster_groups_allowed: [...base.roster_groups_allowed] };
  for (const [name, values] of formValues(form)) {
    if (name === "FORM_TYPE") continue;
    if (name in FIXED) {
      if (values.length > 1 || !FIXED[name](values[0])) throw refuse();
      continue;
    }
    const field = FIELDS.find((f) => `pubsub#${f.key}` === name);
    const value = field?.read(values, maxItems);
    if (!field || value === undefined) throw refuse();
    (config as Record<string, unknown>)[field.key] = value;
  }
  return config;
}

/**
 * Whether publish-options hold for an existing node's configuration: every field given has the
 * node's value (max_items compared as the node keeps them).
 */
export function preconditionsHold(
  form: Element,
  config: NodeConfig,
  maxItems: number,
): boolean {
  const wanted = submitted(form, config, maxItems, true);
  return FIELDS.every((f) =>
    f.key === "max_items"
      ? itemsKept(wanted, maxItems) === itemsKept(config, maxItems)
      : JSON.stringify(wanted[f.key]) === JSON.stringify(config[f.key])
  );
}

/** The form inside a <publish-options/> or <configure/>, if it is of `formType`. */
export function formOf(parent: Element | undefined, formType: string): Element | undefined {
  const form = parent?.child("x", NS.dataForms);
  if (!form) return undefined;
  const type = formValues(form).get("FORM_TYPE")?.[0];
  return type === undefined || type === formType ? form : undefined;
}
