// A failure while handling a stanza, usually the store's: logged, and answered to the sender
// with an error (of type wait when the store is only busy), never a crash and never silence.
import type { Element } from "../xml/element.ts";
import { type ErrorOptions, errorReply } from "../router/stanza_error.ts";
import { StoreBusyError } from "../storage/store.ts";
import { logger } from "../log/logger.ts";

const log = logger("core");

/** The error to answer with: a busy store is worth retrying (RFC 6120 §8.3.2 type wait). */
export function failureOptions(e: unknown): ErrorOptions {
  return e instanceof StoreBusyError ? { type: "wait", text: "storage is busy, retry later" } : {};
}

/**
 * A busy or unreachable store is an expected condition during an outage, when every request hits
 * it: a warning with its message. Anything else is a bug or a broken store: an error with its stack.
 */
export function logFailure(what: string, e: unknown): void {
  if (e instanceof StoreBusyError) log.warn("{what} failed: {error}", { what, error: e.message });
  else log.error("{what} failed: {error}", { what, error: String((e as Error)?.stack ?? e) });
}

/**
 * A rejection handler that logs and answers `stanza` with internal-server-error through `send`:
 * routed back to a remote sender, or handed straight to the local session that sent it.
 */
export function answerFailure(stanza: Element, what: string, send: (reply: Element) => void) {
  return (e: unknown): void => {
    logFailure(what, e);
    const reply = errorReply(stanza, "internal-server-error", failureOptions(e));
    if (reply) send(reply);
  };
}
