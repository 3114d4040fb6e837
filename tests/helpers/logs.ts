// Captures the log records of Parley's loggers for a test, replacing the configured sinks until
// released (then logging is reset, or set up again by `restore`).
import { configureSync, type LogLevel, type LogRecord, resetSync } from "@logtape/logtape";

export function captureLogs(
  lowestLevel: LogLevel = "debug",
  restore: () => void = resetSync,
): { records: LogRecord[]; release: () => void } {
  const records: LogRecord[] = [];
  configureSync({
    reset: true,
    sinks: { capture: (r) => records.push(r) },
    loggers: [
      { category: ["parley"], lowestLevel, sinks: ["capture"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: [] },
    ],
  });
  return { records, release: restore };
}
