// A failure while handling a stanza, usually the store's: logged, and answered to the sender
// with an error, never a crash and never silence. A store that is busy or unreachable (a locked
// SQLite file, a PostgreSQL server down, restarting or overloaded: StoreBusyError) is a passing
// condition, answered `resource-constraint` of type wait: retry later. Anything else (a bug, a
// broken store) is `internal-server-error` of type cancel: retrying will not help.
import type { Element } from "../xml/element.ts";
import { type ErrorCondition, type ErrorOptions, errorReply } from "../router/stanza_error.ts";
import { StoreBusyError } from "../storage/store.ts";
import { logger } from "../log/logger.ts";
import type { Logger } from "@logtape/logtape";

const log = logger("core");

/**
 * The error to answer a failure with, as [condition, options]. RFC 6120 §8.3.3.18: the server
 * "lacks the system resources necessary to service the request", type wait — the one condition
 * that tells a client the request was fine and may succeed later. Not `service-unavailable`
 * (§8.3.3.19, type cancel: the service is not offered at all; clients take it for a missing
 * feature) nor `internal-server-error` (§8.3.3.6, type cancel: a misconfiguration or internal
 * error), which remains the answer to everything else.
 */
export function failureError(e: unknown): [ErrorCondition, ErrorOptions] {
  return e instanceof StoreBusyError
    ? ["resource-constraint", { type: "wait", text: "storage is busy or unreachable, retry later" }]
    : ["internal-server-error", {}];
}

/**
 * A busy or unreachable store is an expected condition during an outage, when every request hits
 * it: a warning with its message. Anything else is a bug or a broken store: an error with its stack.
 * Logged to `to` (the core's logger unless the caller has its own).
 */
export function logFailure(what: string, e: unknown, to: Logger = log): void {
  if (e instanceof StoreBusyError) to.warn("{what} failed: {error}", { what, error: e.message });
  else to.error("{what} failed: {error}", { what, error: String((e as Error)?.stack ?? e) });
}

/**
 * A rejection handler that logs and answers `stanza` with failureError's error through `send`:
 * routed back to a remote sender, or handed straight to the local session that sent it.
 */
export function answerFailure(stanza: Element, what: string, send: (reply: Element) => void) {
  return (e: unknown): void => {
    logFailure(what, e);
    const reply = errorReply(stanza, ...failureError(e));
    if (reply) send(reply);
  };
}
