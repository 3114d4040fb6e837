// The process's own figures for /metrics: memory and CPU as Deno and node:process give them, and
// the open file descriptors, counted as the entries of /proc/self/fd (Linux).
//
// Deno lets only --allow-all read /proc, and `parley serve` runs with narrower permissions, so the
// directory is read through the C library (--allow-ffi, which the server has for its descriptor
// limit, src/server/fd_limit.ts): getdents64(2) on a thread of its own (a nonblocking FFI call),
// since the kernel takes about a microsecond per entry, tens of milliseconds for a busy server's
// descriptors, that the event loop must not wait for. Without FFI, or on another system, the count
// is left out.
import process from "node:process";

export interface ProcessFigures {
  residentBytes: number;
  heapUsedBytes: number;
  heapTotalBytes: number;
  cpuSeconds: number;
  /** Undefined where it cannot be counted. */
  openFds: number | undefined;
}

export async function processFigures(): Promise<ProcessFigures> {
  const memory = Deno.memoryUsage();
  const cpu = process.cpuUsage();
  return {
    residentBytes: memory.rss,
    heapUsedBytes: memory.heapUsed,
    heapTotalBytes: memory.heapTotal,
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
    openFds: await openFds(),
  };
}

const SYMBOLS = {
  open: { parameters: ["buffer", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  getdents64: { parameters: ["i32", "buffer", "usize"], result: "isize", nonblocking: true },
} as const;
const FD_DIR = new TextEncoder().encode("/proc/self/fd\0");
/** struct linux_dirent64: d_ino (8 bytes), d_off (8), d_reclen (2), d_type (1), d_name. */
const RECLEN_AT = 16;
const NAME_AT = 19;
const DOT = 0x2e;
const BUFFER_BYTES = 256 * 1024;

type Libc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];
/** Opened on first use and kept; null where it cannot be. */
let libc: Libc | null | undefined;
/** One count at a time: concurrent scrapes share it. */
let counting: Promise<number | undefined> | undefined;

function openLibc(): Libc | null {
  if (Deno.build.os !== "linux") return null;
  if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") return null;
  try {
    return Deno.dlopen("libc.so.6", SYMBOLS).symbols;
  } catch {
    return null; // not glibc
  }
}

/** This process's open file descriptors; undefined where they cannot be counted. */
export function openFds(): Promise<number | undefined> {
  libc ??= openLibc();
  if (!libc) return Promise.resolve(undefined);
  return counting ??= countEntries(libc).finally(() => counting = undefined);
}

async function countEntries(lib: Libc): Promise<number | undefined> {
  const fd = lib.open(FD_DIR, 0);
  if (fd < 0) return undefined;
  const buf = new Uint8Array(BUFFER_BYTES);
  const view = new DataView(buf.buffer);
  let n = 0;
  try {
    for (;;) {
      const got = Number(await lib.getdents64(fd, buf, BigInt(buf.length)));
      if (got < 0) return undefined;
      if (got === 0) break;
      for (let at = 0; at < got; at += view.getUint16(at + RECLEN_AT, true)) {
        const name = at + NAME_AT;
        const dots = buf[name] === DOT && (buf[name + 1] === 0 ||
          (buf[name + 1] === DOT && buf[name + 2] === 0));
        if (!dots) n++;
      }
    }
  } finally {
    lib.close(fd);
  }
  // Less the descriptor of the directory being read.
  return n - 1;
}
