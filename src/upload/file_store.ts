// Where uploaded files (XEP-0363) are kept, behind one small interface so that another place (an
// object store) can be added without touching the service: a file goes in as a stream and comes
// out as a stream, whole or a byte range, never whole in memory. Two places exist: a directory of
// this node's (disk_store.ts, a single node on SQLite) and the shared PostgreSQL
// (postgres_store.ts, every node of a cluster reads what any node stored). open.ts picks one.
//
// A file is visible (get, list) only once all of its bytes are stored; from the start of its put
// it counts against its owner's quota, so two uploads at once cannot both squeeze under it.

/** What is known of a stored file. */
export interface FileMeta {
  /** Unguessable (the download URL is the only permission there is): 128 random bits. */
  id: string;
  /** The uploader's bare JID: user@host. */
  owner: string;
  filename: string;
  /** The media type the slot was given, served as Content-Type. */
  type: string;
  size: number;
  /** When it was stored, in milliseconds since the epoch (retention counts from it). */
  at: number;
}

/** Bytes `start` to `end`, both included (as HTTP's Range counts them). */
export interface ByteRange {
  start: number;
  end: number;
}

export interface StoredFile {
  meta: FileMeta;
  /** The file's bytes, or those of the range asked for, read as they are consumed. */
  body: ReadableStream<Uint8Array>;
}

/** Why a put stored nothing. */
export type PutRefusal =
  /** A file with this id exists or is being stored (a slot is used once). */
  | "exists"
  /** The owner's files and this one would exceed the quota. */
  | "quota"
  /** The body ended before `size` bytes. */
  | "short"
  /** The body has more than `size` bytes. */
  | "long"
  /** The file was removed while it was being stored (its owner's files purged). */
  | "removed";

export class PutRefused extends Error {
  constructor(readonly reason: PutRefusal) {
    super(`upload refused: ${reason}`);
  }
}

export interface FileStore {
  /**
   * Stores `body` as the file `meta` describes (its `at` is set to the time the bytes are all
   * in). Refused (PutRefused, nothing left behind) when the id is taken, when the owner's stored
   * and arriving files plus this one exceed `quota` bytes, or when the body has not exactly
   * `meta.size` bytes. The body is read as fast as the store takes it, no faster.
   */
  put(meta: FileMeta, body: ReadableStream<Uint8Array>, quota: number): Promise<void>;
  /** A stored file's description, or null. */
  info(id: string): Promise<FileMeta | null>;
  /** A stored file's bytes (or `range` of them, which must lie within it), or null. */
  get(id: string, range?: ByteRange): Promise<StoredFile | null>;
  /** Removes a file; whether there was one. */
  delete(id: string): Promise<boolean>;
  /** The owner's stored files, oldest first. */
  list(owner: string): Promise<FileMeta[]>;
  /** Bytes the owner's files take, those being stored included. */
  usage(owner: string): Promise<number>;
  /** Removes every file of the owner; how many. */
  purge(owner: string): Promise<number>;
  /**
   * Removes the files of `host`'s accounts stored before `before` (its retention), at most
   * `limit` of them, oldest first, and what unfinished puts left behind long ago (a node that
   * died mid-upload); how many files.
   */
  expire(host: string, before: number, limit: number): Promise<number>;
  close(): Promise<void>;
}

/**
 * Bytes read from a body at a time before they are written out (both stores): a row of the
 * PostgreSQL store. 128 KiB measured best of 64–256 KiB (PUT 63 MiB/s against 49 with 64 KiB,
 * and the least memory churn: npm:postgres moves bytea as hex text, twice the bytes as strings).
 */
export const CHUNK_BYTES = 128 * 1024;

/**
 * An unfinished put this old was abandoned by a node that died in the middle of it: its bytes
 * and its place in the quota are freed by the next expire.
 */
export const ABANDONED_MS = 6 * 3600_000;

/** user@host split at its last "@" (a domain has none; a local part may not either). */
export function ownerParts(owner: string): { user: string; host: string } {
  const at = owner.lastIndexOf("@");
  return { user: owner.slice(0, at), host: owner.slice(at + 1) };
}

/**
 * Reads `body` in chunks of exactly CHUNK_BYTES (the last one shorter) and hands each to `write`,
 * which has the buffer until its promise settles. While `writers` writes are under way (1: a file
 * written in order) the next chunk is read into one more buffer, and no further: the body is read
 * at the writers' pace, in `writers` + 1 buffers whatever its size. Rejects with PutRefused "long"
 * as soon as more than `size` bytes came, "short" when it ended early or broke off, or with a
 * write's failure; no write is under way once it has settled.
 */
export async function readChunks(
  body: ReadableStream<Uint8Array>,
  size: number,
  write: (chunk: Uint8Array) => Promise<unknown>,
  writers = 1,
): Promise<void> {
  const reader = body.getReader();
  const capacity = Math.min(CHUNK_BYTES, Math.max(size, 1));
  // A ring: the buffers of the writes under way are the last ones before `current`.
  const buffers = [new Uint8Array(capacity)];
  let current = 0;
  let filled = 0;
  let offset = 0;
  const writing: Promise<unknown>[] = [];
  const flush = async (chunk: Uint8Array) => {
    if (writing.length === writers) await writing.shift();
    const w = write(chunk);
    w.catch(() => {}); // taken when awaited in turn
    writing.push(w);
    offset += chunk.length;
    current = (current + 1) % (writers + 1);
    buffers[current] ??= new Uint8Array(capacity);
    filled = 0;
  };
  try {
    for (;;) {
      const { value, done } = await reader.read().catch(() => {
        // The request broke off (the client went, the connection was cut): its body is short.
        throw new PutRefused("short");
      });
      if (done) break;
      if (offset + filled + value.length > size) throw new PutRefused("long");
      for (let from = 0; from < value.length;) {
        const buf = buffers[current];
        const n = Math.min(buf.length - filled, value.length - from);
        buf.set(value.subarray(from, from + n), filled);
        filled += n;
        from += n;
        if (filled === buf.length) await flush(buf);
      }
    }
    if (offset + filled !== size) throw new PutRefused("short");
    if (filled > 0) await flush(buffers[current].subarray(0, filled));
    const failed = (await Promise.allSettled(writing.splice(0))).find((r) =>
      r.status === "rejected"
    );
    if (failed) throw (failed as PromiseRejectedResult).reason;
  } catch (e) {
    await Promise.allSettled(writing);
    await reader.cancel().catch(() => {});
    throw e;
  } finally {
    reader.releaseLock();
  }
}
