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
// Messages stay templates ("authenticated {user}"), values go in "properties": easy to grep and parse.
const format = getJsonLinesFormatter({ message: "template" });

function stderrSink(record: LogRecord): void {
  // Synchronous on purpose: a line logged just before exit (shutdown, fatal error) is not lost.
  Deno.stderr.writeSync(encoder.encode(format(record)));
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
