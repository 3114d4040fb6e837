// What ends `parley serve` on an error nothing caught (an uncaught exception, an unhandled
// rejection): one JSON log line of level fatal through the same sink as every other line, instead
// of Deno's coloured stack trace outside the log, then exit with FATAL_EXIT_CODE. A fatal error
// stays fatal: the process state is unknown, so nothing more is attempted (the PID file it leaves
// is replaced at the next start).
import { disposeSync } from "@logtape/logtape";
import { logger } from "./logger.ts";

/** Exit status after a fatal error (Deno's own for an uncaught error, too). */
export const FATAL_EXIT_CODE = 1;

const log = logger("server");

/** An error's name, message and stack; a thrown value that is no Error, as its type and text. */
export function describeError(e: unknown): { name: string; message: string; stack?: string } {
  if (e instanceof Error) {
    return e.stack ? { name: e.name, message: e.message, stack: e.stack } : {
      name: e.name,
      message: e.message,
    };
  }
  let message: string;
  try {
    message = typeof e === "string" ? e : JSON.stringify(e) ?? String(e);
  } catch {
    // A BigInt, a cycle, a throwing toJSON: its plain text, or at least its kind.
    try {
      message = String(e);
    } catch {
      message = Object.prototype.toString.call(e);
    }
  }
  return { name: e === null ? "null" : typeof e, message };
}

let dying = false;

/**
 * Logs `error` as a fatal `origin` ("uncaught exception", "unhandled rejection") and exits. The
 * sink writes synchronously, so the line is out before the exit; sinks that buffer are flushed.
 * Only the first fatal error is logged (another one raised while exiting is not).
 */
export function dieOfFatalError(origin: string, error: unknown): never {
  if (!dying) {
    dying = true;
    const described = describeError(error);
    try {
      log.fatal("fatal error ({origin}), exiting: {error.name}: {error.message}", {
        origin,
        error: described,
      });
    } catch {
      // The logger itself failed: the line is still one JSON line on stderr.
      const line = JSON.stringify({
        "@timestamp": new Date().toISOString(),
        level: "FATAL",
        message: `fatal error (${origin}), exiting: ${described.name}: ${described.message}`,
        logger: "parley.server",
        properties: { origin, error: described },
      });
      try {
        Deno.stderr.writeSync(new TextEncoder().encode(line + "\n"));
      } catch {
        // Nowhere left to say it.
      }
    }
    try {
      disposeSync();
    } catch {
      // Exiting anyway.
    }
  }
  Deno.exit(FATAL_EXIT_CODE);
}

/**
 * Makes an uncaught exception or an unhandled rejection anywhere in the process fatal in the way
 * above. Call once logging is set up (setupLogging).
 */
export function installFatalHandler(): void {
  globalThis.addEventListener("error", (event) => {
    event.preventDefault();
    dieOfFatalError("uncaught exception", event.error ?? event.message);
  });
  globalThis.addEventListener("unhandledrejection", (event) => {
    event.preventDefault();
    dieOfFatalError("unhandled rejection", event.reason);
  });
}
