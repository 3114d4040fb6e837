// The process's limit on open file descriptors. Every connection, listener and open database file
// takes one, so `parley serve` raises the soft limit to the hard one at start (as nginx, ejabberd
// and Deno's own CLI do) and logs it, and the listeners refuse connections near it.
//
// Deno has no API for getrlimit/setrlimit(2), and reading /proc/self/limits needs --allow-all, so
// both calls go to the C library through FFI (--allow-ffi, granted in deno.json's tasks). `deno
// run` usually raised the soft limit already; a `deno compile`d binary need not have.
import { logger } from "../log/logger.ts";

const log = logger("server");

export interface DescriptorLimits {
  /** The limit in force (Infinity: unlimited). */
  soft: number;
  /** How far an unprivileged process may raise `soft`. */
  hard: number;
}

/** Where getrlimit lives, and RLIMIT_NOFILE, per system. */
const LIBC: Partial<Record<typeof Deno.build.os, { path: string; nofile: number }>> = {
  linux: { path: "libc.so.6", nofile: 7 },
  darwin: { path: "libSystem.dylib", nofile: 8 },
};

const SYMBOLS = {
  getrlimit: { parameters: ["i32", "buffer"], result: "i32" },
  setrlimit: { parameters: ["i32", "buffer"], result: "i32" },
} as const;

let effective: DescriptorLimits | null | undefined;

/**
 * Calls `change` with the C library and the limits as `struct rlimit` (soft, hard), then reads
 * them back; undefined where that is not possible (other systems, no FFI permission).
 */
function withLimits(
  change: (lib: Deno.DynamicLibrary<typeof SYMBOLS>["symbols"], rlimit: BigUint64Array) => void,
): DescriptorLimits | undefined {
  const libc = LIBC[Deno.build.os];
  if (!libc || Deno.permissions.querySync({ name: "ffi" }).state !== "granted") return undefined;
  const lib = Deno.dlopen(libc.path, SYMBOLS);
  try {
    const rlimit = new BigUint64Array(2);
    if (lib.symbols.getrlimit(libc.nofile, rlimit) !== 0) return undefined;
    change(lib.symbols, rlimit);
    if (lib.symbols.getrlimit(libc.nofile, rlimit) !== 0) return undefined;
    // RLIM_INFINITY is the largest value: 2^64-1 on Linux, 2^63-1 on macOS.
    const value = (v: bigint) => v >= 1n << 62n ? Infinity : Number(v);
    return { soft: value(rlimit[0]), hard: value(rlimit[1]) };
  } finally {
    lib.close();
  }
}

/** This process's limits (read once, then kept up to date by raiseDescriptorLimit). */
export function descriptorLimits(): DescriptorLimits | undefined {
  if (effective === undefined) effective = withLimits(() => {}) ?? null;
  return effective ?? undefined;
}

/** How many descriptors this process may hold open; Infinity when unlimited or unknown. */
export function descriptorLimit(): number {
  return descriptorLimits()?.soft ?? Infinity;
}

/** Raises the soft limit to the hard one where allowed, and logs the limit then in force. */
export function raiseDescriptorLimit(): void {
  effective = withLimits((libc, rlimit) => {
    if (rlimit[0] >= rlimit[1]) return;
    rlimit[0] = rlimit[1];
    libc.setrlimit(LIBC[Deno.build.os]!.nofile, rlimit);
  }) ?? null;
  if (!effective) {
    log.warn("open file limit unknown: it is read through the C library (--allow-ffi)");
    return;
  }
  const [soft, hard] = [show(effective.soft), show(effective.hard)];
  if (effective.soft < effective.hard) {
    log.warn("open file limit {soft} could not be raised to the hard limit {hard}", {
      soft,
      hard,
    });
  } else {
    log.info("open file limit {soft} (hard limit {hard})", { soft, hard });
  }
}

const show = (n: number): number | string => n === Infinity ? "unlimited" : n;
