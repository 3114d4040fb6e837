// Stream features offered at each stage of client negotiation (RFC 6120 §4.3.2).
import { type Element, x } from "../xml/element.ts";
import { NS } from "../xml/ns.ts";

export interface FeatureState {
  secure: boolean;
  authenticated: boolean;
  starttls: "required" | "optional" | "disabled";
  mechanisms: string[];
  registration: boolean;
  /** Client State Indication (XEP-0352) offered. */
  csi: boolean;
}

export function streamFeatures(s: FeatureState): Element {
  const f = x("stream:features");
  if (s.authenticated) {
    f.append(
      x("bind", { xmlns: NS.bind }),
      x("session", { xmlns: NS.session }, x("optional")),
      x("ver", { xmlns: NS.rosterVer }),
      x("sm", { xmlns: NS.sm }),
    );
    if (s.csi) f.append(x("csi", { xmlns: NS.csi }));
    return f;
  }
  if (!s.secure && s.starttls !== "disabled") {
    f.append(x("starttls", { xmlns: NS.tls }, s.starttls === "required" && x("required")));
    if (s.starttls === "required") return f;
  }
  f.append(x("mechanisms", { xmlns: NS.sasl }, ...s.mechanisms.map((m) => x("mechanism", {}, m))));
  if (s.registration) f.append(x("register", { xmlns: NS.registerFeature }));
  return f;
}
