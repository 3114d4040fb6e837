// Stream errors (RFC 6120 §4.9): the conditions and their serialized form.
import { type Element, x } from "../xml/element.ts";
import { NS } from "../xml/ns.ts";

export type StreamErrorCondition =
  | "bad-format"
  | "bad-namespace-prefix"
  | "conflict"
  | "connection-timeout"
  | "host-gone"
  | "host-unknown"
  | "improper-addressing"
  | "internal-server-error"
  | "invalid-from"
  | "invalid-namespace"
  | "invalid-xml"
  | "not-authorized"
  | "not-well-formed"
  | "policy-violation"
  | "remote-connection-failed"
  | "reset"
  | "resource-constraint"
  | "restricted-xml"
  | "see-other-host"
  | "system-shutdown"
  | "undefined-condition"
  | "unsupported-encoding"
  | "unsupported-feature"
  | "unsupported-stanza-type"
  | "unsupported-version";

/** A stream error, with an application-specific condition (RFC 6120 §4.9.4) when given. */
export function streamErrorXml(condition: string, text?: string, extra?: Element): string {
  return x(
    "stream:error",
    {},
    x(condition, { xmlns: NS.streamErrors }),
    text ? x("text", { xmlns: NS.streamErrors, "xml:lang": "en" }, text) : undefined,
    extra,
  ).toString();
}
