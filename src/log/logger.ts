// Structured logging through LogTape: one JSON line per event on stderr, level from config.
import {
  configureSync,
  getJsonLinesFormatter,
  getLogger,
  type Logger,
  type LogLevel,
  type LogRecord,
} from "@logtape/logtape";

const encoder = new TextEncoder();
const format = getJsonLinesFormatter({ message: "rendered" });

/** A value as it reads in a message: strings and numbers bare (LogTape would quote strings). */
function show(value: unknown): string {
  return typeof value === "string" || typeof value === "number" || typeof value === "boolean"
    ? String(value)
    : JSON.stringify(value) ?? String(value);
}

/**
 * One record as a JSON line: the message with its placeholders filled ("authenticated
 * alice@localhost on c2s-1 …"), and every value again, typed, under "properties" for tools.
 */
export function formatLine(record: LogRecord): string {
  const message = record.message.map((part, i) => i % 2 ? show(part) : part).join("");
  return format({ ...record, message: [message] });
}

function stderrSink(record: LogRecord): void {
  // Synchronous on purpose: a line logged just before exit (shutdown, fatal error) is not lost.
  // A write may take only part of a long line (a stack trace): the rest follows at once.
  const bytes = encoder.encode(formatLine(record));
  for (let done = 0; done < bytes.length;) done += Deno.stderr.writeSync(bytes.subarray(done));
}

export function setupLogging(level: "debug" | "info" | "warning" | "error"): void {
  configureSync({
    reset: true,
    sinks: { stderr: stderrSink },
    loggers: [
      { category: ["parley"], lowestLevel: level as LogLevel, sinks: ["stderr"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["stderr"] },
    ],
  });
}

/** The logger of one part of the server, e.g. logger("c2s"). */
export function logger(part: string): Logger {
  return getLogger(["parley", part]);
}
