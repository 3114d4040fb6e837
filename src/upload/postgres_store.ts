// Uploaded files in the shared PostgreSQL (a cluster): every node reads what any node stored, and
// a file outlives the node that received it. A file is a row of upload_files and its bytes rows of
// upload_chunks, CHUNK_BYTES each (the last one shorter), so that a file of any size goes in and
// comes out a few chunks at a time. The tables come with the Store's migrations
// (src/storage/postgres_migrations.ts). This store has a pool of its own (open.ts): a long upload
// or download never makes stanzas wait for a connection.
//
// A put first reserves the file's row, within the owner's quota, in one transaction that holds
// the owner's lock (two nodes cannot both squeeze under it); its chunks follow, WRITERS inserts
// under way while the next chunk is read (the body is read no faster than the database writes);
// the row is marked complete last. A put that fails takes its row, and with it its chunks, away.
import { type SqlDriver, st } from "../storage/driver.ts";
import { logger } from "../log/logger.ts";
import {
  ABANDONED_MS,
  type ByteRange,
  CHUNK_BYTES,
  type FileMeta,
  type FileStore,
  ownerParts,
  PutRefused,
  readChunks,
  type StoredFile,
} from "./file_store.ts";

const log = logger("upload");
/**
 * Chunk reads a download keeps under way, one statement and one chunk each. One chunk a statement
 * because npm:postgres gathers a statement's rows, each row's bytes as hex text, before it
 * answers: reading 4 at once took half as much again of the memory (RSS +121 MiB against +78 MiB
 * while 200 MiB streamed) and was slower (59 MiB/s against 65) than 3 reads under way.
 */
const READS_AHEAD = 3;
/** Chunk inserts an upload keeps under way (each on a connection of the pool). */
const WRITERS = 2;
const COLUMNS = "id, host, username, filename, content_type, size, stored_at";
const OWNER = "host = ? AND username = ?";

/** What the owner's files take, those being stored included (`used`). */
const usedBy = (host: string, user: string) =>
  st(`SELECT COALESCE(SUM(size), 0) AS used FROM upload_files WHERE ${OWNER}`, host, user);

export class PostgresFileStore implements FileStore {
  constructor(readonly db: SqlDriver) {}

  async put(meta: FileMeta, body: ReadableStream<Uint8Array>, quota: number): Promise<void> {
    const { user, host } = ownerParts(meta.owner);
    await this.db.transaction(async (tx) => {
      await tx.lock("upload", user, host);
      // A used slot is told apart from a full quota (which the used slot's file is part of).
      if ((await tx.all(st(`SELECT 1 FROM upload_files WHERE id = ?`, meta.id))).length > 0) {
        throw new PutRefused("exists");
      }
      const [row] = await tx.all(
        usedBy(host, user),
      );
      if (Number(row.used) + meta.size > quota) throw new PutRefused("quota");
      const added = await tx.run(st(
        `INSERT INTO upload_files (${COLUMNS}, complete) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (id) DO NOTHING`,
        meta.id,
        host,
        user,
        meta.filename,
        meta.type,
        meta.size,
        Date.now(),
        false,
      ));
      if (added === 0) throw new PutRefused("exists");
    });
    try {
      let seq = 0;
      await readChunks(body, meta.size, (chunk) =>
        this.db.run(
          st(
            `INSERT INTO upload_chunks (file_id, seq, data) VALUES (?, ?, ?)`,
            meta.id,
            seq++,
            chunk,
          ),
        ), WRITERS);
      const done = await this.db.run(
        st(
          `UPDATE upload_files SET complete = ?, stored_at = ? WHERE id = ?`,
          true,
          Date.now(),
          meta.id,
        ),
      );
      // Removed meanwhile (the account's files purged): not stored, and not said to be.
      if (done !== 1) throw new PutRefused("removed");
    } catch (e) {
      await this.db.run(st(`DELETE FROM upload_files WHERE id = ?`, meta.id)).catch((e) =>
        // Left for expire() to remove once abandoned.
        log.warn("removing the failed upload {id} failed: {error}", {
          id: meta.id,
          error: String(e),
        })
      );
      throw e;
    }
  }

  async info(id: string): Promise<FileMeta | null> {
    const [row] = await this.db.all(
      st(`SELECT ${COLUMNS} FROM upload_files WHERE id = ? AND complete`, id),
    );
    return row ? metaOf(row) : null;
  }

  async get(id: string, range?: ByteRange): Promise<StoredFile | null> {
    const meta = await this.info(id);
    if (!meta) return null;
    const { start, end } = range ?? { start: 0, end: meta.size - 1 };
    const last = Math.floor(end / CHUNK_BYTES);
    let next = Math.floor(start / CHUNK_BYTES);
    /** Chunk reads under way, in order: one statement each. */
    const reads: { seq: number; rows: Promise<Record<string, unknown>[]> }[] = [];
    const readAhead = () => {
      while (meta.size > 0 && reads.length < READS_AHEAD && next <= last) {
        const seq = next++;
        const rows = this.db.all(
          st(`SELECT data FROM upload_chunks WHERE file_id = ? AND seq = ?`, id, seq),
        );
        rows.catch(() => {}); // taken when its turn comes, or dropped with a cancelled download
        reads.push({ seq, rows });
      }
    };
    readAhead();
    const body = new ReadableStream<Uint8Array>({
      async pull(out) {
        const read = reads.shift();
        if (!read) return out.close();
        readAhead();
        const [row] = await read.rows;
        if (!row) throw new Error(`the upload ${id} was removed while it was read`);
        const data = row.data as Uint8Array;
        const base = read.seq * CHUNK_BYTES;
        const lo = Math.max(start - base, 0);
        const hi = Math.min(end - base + 1, data.length);
        out.enqueue(lo === 0 && hi === data.length ? data : data.subarray(lo, hi));
        if (reads.length === 0) out.close();
      },
    }, { highWaterMark: 0 });
    return { meta, body };
  }

  async delete(id: string): Promise<boolean> {
    return await this.db.run(st(`DELETE FROM upload_files WHERE id = ?`, id)) === 1;
  }

  async list(owner: string): Promise<FileMeta[]> {
    const { user, host } = ownerParts(owner);
    const rows = await this.db.all(st(
      `SELECT ${COLUMNS} FROM upload_files WHERE ${OWNER} AND complete ORDER BY stored_at, id`,
      host,
      user,
    ));
    return rows.map(metaOf);
  }

  async usage(owner: string): Promise<number> {
    const { user, host } = ownerParts(owner);
    const [row] = await this.db.all(
      usedBy(host, user),
    );
    return Number(row.used);
  }

  purge(owner: string): Promise<number> {
    const { user, host } = ownerParts(owner);
    return this.db.run(st(`DELETE FROM upload_files WHERE ${OWNER}`, host, user));
  }

  expire(host: string, before: number, limit: number): Promise<number> {
    return this.db.run(st(
      `DELETE FROM upload_files WHERE id IN (
         SELECT id FROM upload_files
         WHERE host = ? AND ((complete AND stored_at < ?) OR (NOT complete AND stored_at < ?))
         ORDER BY stored_at LIMIT ?)`,
      host,
      before,
      Date.now() - ABANDONED_MS,
      limit,
    ));
  }

  close(): Promise<void> {
    return this.db.close();
  }
}

function metaOf(row: Record<string, unknown>): FileMeta {
  return {
    id: row.id as string,
    owner: `${row.username}@${row.host}`,
    filename: row.filename as string,
    type: row.content_type as string,
    size: Number(row.size),
    at: Number(row.stored_at),
  };
}
