// Stanza errors (RFC 6120 §8.3): built as replies to the offending stanza, never in reply to an error.
import { type Element, type Node, x } from "../xml/element.ts";
import { NS } from "../xml/ns.ts";

export type ErrorCondition =
  | "bad-request"
  | "conflict"
  | "feature-not-implemented"
  | "forbidden"
  | "gone"
  | "internal-server-error"
  | "item-not-found"
  | "jid-malformed"
  | "not-acceptable"
  | "not-allowed"
  | "not-authorized"
  | "policy-violation"
  | "recipient-unavailable"
  | "redirect"
  | "registration-required"
  | "remote-server-not-found"
  | "remote-server-timeout"
  | "resource-constraint"
  | "service-unavailable"
  | "subscription-required"
  | "undefined-condition"
  | "unexpected-request";

const DEFAULT_TYPE: Record<ErrorCondition, string> = {
  "bad-request": "modify",
  "conflict": "cancel",
  "feature-not-implemented": "cancel",
  "forbidden": "auth",
  "gone": "cancel",
  "internal-server-error": "cancel",
  "item-not-found": "cancel",
  "jid-malformed": "modify",
  "not-acceptable": "modify",
  "not-allowed": "cancel",
  "not-authorized": "auth",
  "policy-violation": "modify",
  "recipient-unavailable": "wait",
  "redirect": "modify",
  "registration-required": "auth",
  "remote-server-not-found": "cancel",
  "remote-server-timeout": "wait",
  "resource-constraint": "wait",
  "service-unavailable": "cancel",
  "subscription-required": "auth",
  "undefined-condition": "cancel",
  "unexpected-request": "wait",
};

export interface ErrorOptions {
  type?: string;
  text?: string;
  /** Application-specific condition element (e.g. XEP-0191's <blocked/>). */
  extra?: Element;
  /** Address the error as coming from this JID rather than the stanza's `to`. */
  from?: string;
}

export function errorElement(condition: ErrorCondition, opts: ErrorOptions = {}): Element {
  const children: Node[] = [x(condition, { xmlns: NS.stanzaErrors })];
  if (opts.text) children.push(x("text", { xmlns: NS.stanzaErrors }, opts.text));
  if (opts.extra) children.push(opts.extra);
  return x("error", { type: opts.type ?? DEFAULT_TYPE[condition] }, ...children);
}

/** The error reply to `stanza`, or null when none may be sent (errors and iq results). */
export function errorReply(
  stanza: Element,
  condition: ErrorCondition,
  opts: ErrorOptions = {},
): Element | null {
  const type = stanza.attrs.type;
  if (type === "error" || (stanza.name === "iq" && type === "result")) return null;
  return x(stanza.name, {
    from: opts.from ?? stanza.attrs.to,
    to: stanza.attrs.from,
    id: stanza.attrs.id,
    type: "error",
  }, errorElement(condition, opts));
}

/** An iq result addressed back to the requester. */
export function iqResult(iq: Element, payload?: Element): Element {
  return x(
    "iq",
    { from: iq.attrs.to, to: iq.attrs.from, id: iq.attrs.id, type: "result" },
    payload,
  );
}
