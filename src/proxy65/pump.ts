// One direction of a relayed stream: bytes read from a source are handed to a sink, with the
// backpressure and memory bound of the proxy. The source is a socket today; the sink is a
// function, so a stream can end on another node (a link) as well as on a local socket.
//
// Why this shape (measured, see docs/PERFORMANCE.md, "proxy65: options measured"): Deno's native
// sockets read into and write from the JavaScript buffer itself, so the only copies left are the
// kernel's; node:net (a.pipe(b)) and `readable.pipeTo(writable)` allocate a chunk per read and
// cost about twice the CPU per byte. Buffers of 256 KiB–4 MiB relay at the same rate; 64 KiB costs
// 40 % more CPU per byte, so buffers grow while reads fill them. splice(2) through Deno's FFI
// halves the CPU per byte but needs the socket's descriptor, which Deno does not expose, and
// stalls with many streams; a relay per core cannot take over a socket (a Worker receives a
// posted Deno.TcpConn as `{}`) and gains nothing while the other core runs the clients.
import { TokenBucket } from "../core/token_bucket.ts";

const INITIAL_BUFFER = 64 * 1024;

/** What a stream keeps about its traffic, shared by its two directions. */
export interface PumpStats {
  bytes: number;
  /** Bytes of copy buffers the stream holds: at most 2 × `cap` per direction. */
  held: number;
  lastActivity: number;
}

export interface PumpOptions {
  /** Largest buffer, in bytes. */
  cap: number;
  /** Bytes per second for this direction; 0 is unlimited. */
  bandwidth: number;
  stats: PumpStats;
}

/**
 * Copies `first`, then every chunk `from` yields, to `write`, until the source ends or a write
 * fails (resolves either way). Two buffers: the next read fills one while the previous chunk is
 * still being written from the other, so both ends stay busy; a read waits for a free buffer,
 * which is the backpressure.
 */
export async function pump(
  first: Promise<Uint8Array | null>,
  from: { read(buf: Uint8Array): Promise<number | null> },
  write: (chunk: Uint8Array) => Promise<void>,
  { cap, bandwidth, stats }: PumpOptions,
): Promise<void> {
  let size = Math.min(INITIAL_BUFFER, cap);
  const bufs = [new Uint8Array(size), new Uint8Array(size)];
  stats.held += 2 * size;
  const bucket = bandwidth > 0 ? new TokenBucket(bandwidth, bandwidth) : undefined;
  // Resolves false when the write failed (the other side went away).
  let writing = Promise.resolve(true);
  try {
    let chunk = await first;
    for (let i = 0; chunk !== null; i ^= 1) {
      stats.lastActivity = Date.now();
      stats.bytes += chunk.length;
      if (!(await writing)) return;
      writing = write(chunk).then(() => true, () => false);
      const wait = bucket?.spend(chunk.length, stats.lastActivity);
      if (wait) await new Promise((r) => setTimeout(r, wait));
      // This buffer's last chunk has been written (awaited above), so it may be replaced.
      if (bufs[i].length < size) {
        stats.held += size - bufs[i].length;
        bufs[i] = new Uint8Array(size);
      }
      const n = await from.read(bufs[i]);
      // A read that fills the buffer means the sender is ahead of us: grow, up to the cap.
      if (n === bufs[i].length && size < cap) size = Math.min(cap, size * 2);
      chunk = n === null ? null : bufs[i].subarray(0, n);
    }
    await writing;
  } catch {
    // A side went away: the stream ends.
  }
}
