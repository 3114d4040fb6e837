// Stanza errors as assertions compare them: the stanza's type, the condition and the error type.
import type { Element } from "../../src/xml/element.ts";

export const errorOf = (e: Element) => ({
  type: e.attrs.type,
  condition: e.child("error")?.elements()[0]?.name,
  errorType: e.child("error")?.attrs.type,
});

/** What a request that needs the store gets while the store is down or busy: retry later. */
export const STORE_DOWN = { type: "error", condition: "resource-constraint", errorType: "wait" };
