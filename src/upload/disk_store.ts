// Uploaded files in a directory of this node's (`data_dir/uploads`), for a single node on SQLite:
// <dir>/<first two characters of the id>/<id> holds the bytes and <id>.json the file's FileMeta.
// Bytes arrive in <id>.part, are flushed to disk and renamed to <id>; the .json is written last
// (flushed, then renamed into place), so a file is there exactly when its .json is, and a crash
// at any point leaves either the whole file or something invisible that expire() sweeps away.
// Removal takes the .json first, for the same reason.
//
// What each owner stores (for the quota) is kept in memory: read from the .json files at first
// use, kept by this process's puts and removals, and read from the directory again at each
// expire() — how a purge by `parley upload purge`, another process, is seen here. Ids are
// checked before they name a path: nothing outside the directory is ever touched.
import { join } from "node:path";
import { logger } from "../log/logger.ts";
import { ID_PATTERN } from "./slot.ts";
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
/** What an id looks like (upload/slot.ts makes them): checked before it names a path. */
const ID = new RegExp(`^${ID_PATTERN}$`);

interface Entry {
  size: number;
  at: number;
  /** False while its bytes arrive. */
  complete: boolean;
}

/** Owner → id → entry. */
type Index = Map<string, Map<string, Entry>>;

export class DiskFileStore implements FileStore {
  #index: Promise<Index> | undefined;

  constructor(readonly dir: string) {}

  async put(meta: FileMeta, body: ReadableStream<Uint8Array>, quota: number): Promise<void> {
    const p = this.#paths(meta.id);
    if (!p) throw new Error(`not an upload id: ${meta.id}`);
    const index = await this.#loaded();
    // Checked and reserved with no await between: two puts cannot both pass.
    const mine = index.get(meta.owner) ?? new Map<string, Entry>();
    if (mine.has(meta.id)) throw new PutRefused("exists");
    if (sum(mine) + meta.size > quota) throw new PutRefused("quota");
    const entry: Entry = { size: meta.size, at: Date.now(), complete: false };
    mine.set(meta.id, entry);
    index.set(meta.owner, mine);
    let file: Deno.FsFile | undefined;
    let renamed = false;
    try {
      if (await exists(p.meta)) throw new PutRefused("exists");
      await Deno.mkdir(p.dir, { recursive: true });
      file = await Deno.open(p.part, { write: true, createNew: true }).catch((e) => {
        if (e instanceof Deno.errors.AlreadyExists) throw new PutRefused("exists");
        throw e;
      });
      const out = file;
      await readChunks(body, meta.size, (chunk) => writeAll(out, chunk));
      await out.syncData();
      out.close();
      file = undefined;
      await Deno.rename(p.part, p.data);
      renamed = true;
      const stored = { ...meta, at: Date.now() };
      await writeDurably(p.meta, JSON.stringify(stored));
      entry.at = stored.at;
      entry.complete = true;
    } catch (e) {
      file?.close();
      await Promise.all([
        removeIfThere(p.part),
        renamed ? removeIfThere(p.data) : undefined,
      ]).catch((e) => log.warn("cleaning up a failed upload: {error}", { error: String(e) }));
      forget(index, meta.owner, meta.id);
      throw e;
    }
  }

  async info(id: string): Promise<FileMeta | null> {
    const p = this.#paths(id);
    if (!p) return null;
    try {
      return JSON.parse(await Deno.readTextFile(p.meta)) as FileMeta;
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return null;
      throw e;
    }
  }

  async get(id: string, range?: ByteRange): Promise<StoredFile | null> {
    const meta = await this.info(id);
    const p = this.#paths(id);
    if (!meta || !p) return null;
    const { start, end } = range ?? { start: 0, end: meta.size - 1 };
    let file: Deno.FsFile;
    try {
      file = await Deno.open(p.data, { read: true });
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return null; // removed meanwhile
      throw e;
    }
    let left = end - start + 1;
    let open = true;
    const close = () => {
      if (open) file.close();
      open = false;
    };
    const body = new ReadableStream<Uint8Array>({
      async start() {
        if (left > 0) await file.seek(start, Deno.SeekMode.Start);
      },
      async pull(out) {
        if (left <= 0) {
          close();
          return out.close();
        }
        const buf = new Uint8Array(Math.min(CHUNK_BYTES, left));
        const n = await file.read(buf);
        if (n === null) {
          close();
          throw new Error(`the upload ${id} is shorter than its size`);
        }
        left -= n;
        out.enqueue(n === buf.length ? buf : buf.subarray(0, n));
        if (left === 0) {
          close();
          out.close();
        }
      },
      cancel: close,
    }, { highWaterMark: 0 });
    return { meta, body };
  }

  async delete(id: string): Promise<boolean> {
    const meta = await this.info(id);
    const p = this.#paths(id);
    if (!meta || !p) return false;
    const gone = await removeIfThere(p.meta);
    await removeIfThere(p.data);
    if (this.#index) forget(await this.#index, meta.owner, id);
    return gone;
  }

  async list(owner: string): Promise<FileMeta[]> {
    const mine = (await this.#loaded()).get(owner) ?? new Map<string, Entry>();
    const metas: FileMeta[] = [];
    for (const [id, e] of mine) {
      if (!e.complete) continue;
      const meta = await this.info(id);
      if (meta) metas.push(meta);
    }
    return metas.sort((a, b) => a.at - b.at || (a.id < b.id ? -1 : 1));
  }

  async usage(owner: string): Promise<number> {
    return sum((await this.#loaded()).get(owner));
  }

  async purge(owner: string): Promise<number> {
    let n = 0;
    for (const meta of await this.list(owner)) if (await this.delete(meta.id)) n++;
    return n;
  }

  async expire(host: string, before: number, limit: number): Promise<number> {
    const index = await this.#loaded();
    const old: [string, number][] = [];
    for (const [owner, mine] of index) {
      if (ownerParts(owner).host !== host) continue;
      for (const [id, e] of mine) if (e.complete && e.at < before) old.push([id, e.at]);
    }
    old.sort((a, b) => a[1] - b[1]);
    let n = 0;
    for (const [id] of old.slice(0, limit)) if (await this.delete(id)) n++;
    // The backlog is gone: read the directory again, and sweep what crashes left.
    if (n < limit) await this.#reconcile(index);
    return n;
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  #loaded(): Promise<Index> {
    return this.#index ??= this.#scan(false).catch((e) => {
      this.#index = undefined; // read again next time
      throw e;
    });
  }

  /**
   * Reads the directory: every stored file by owner. With `sweep`, also removes what no file
   * owns any more (bytes without a .json, unfinished .part files) once older than ABANDONED_MS.
   */
  async #scan(sweep: boolean): Promise<Index> {
    const index: Index = new Map();
    const abandoned = Date.now() - ABANDONED_MS;
    for (const sub of await entries(this.dir)) {
      if (!sub.isDirectory || sub.name.length !== 2) continue;
      const subdir = join(this.dir, sub.name);
      const names = new Set((await entries(subdir)).map((e) => e.name));
      for (const name of names) {
        const path = join(subdir, name);
        if (name.endsWith(".json")) {
          const meta = await readMeta(path);
          if (!meta) continue;
          const mine = index.get(meta.owner) ?? new Map<string, Entry>();
          mine.set(meta.id, { size: meta.size, at: meta.at, complete: true });
          index.set(meta.owner, mine);
        } else if (sweep && !names.has(`${name}.json`)) {
          const stat = await Deno.stat(path).catch(() => undefined);
          if (stat?.isFile && (stat.mtime?.getTime() ?? 0) < abandoned) await removeIfThere(path);
        }
      }
    }
    return index;
  }

  /** The index made anew from the directory, keeping this process's puts under way. */
  async #reconcile(index: Index): Promise<void> {
    const since = Date.now();
    const fresh = await this.#scan(true);
    for (const [owner, mine] of index) {
      for (const [id, e] of mine) {
        // Puts under way, and those finished while the directory was read.
        if (!e.complete || e.at >= since) {
          const to = fresh.get(owner) ?? new Map<string, Entry>();
          to.set(id, e);
          fresh.set(owner, to);
        }
      }
    }
    index.clear();
    for (const [owner, mine] of fresh) index.set(owner, mine);
  }

  #paths(id: string) {
    if (!ID.test(id)) return undefined;
    const dir = join(this.dir, id.slice(0, 2));
    const data = join(dir, id);
    return { dir, data, part: `${data}.part`, meta: `${data}.json` };
  }
}

function sum(mine: Map<string, Entry> | undefined): number {
  let n = 0;
  for (const e of mine?.values() ?? []) n += e.size;
  return n;
}

function forget(index: Index, owner: string, id: string): void {
  const mine = index.get(owner);
  mine?.delete(id);
  if (mine?.size === 0) index.delete(owner);
}

async function entries(dir: string): Promise<Deno.DirEntry[]> {
  const out: Deno.DirEntry[] = [];
  try {
    for await (const e of Deno.readDir(dir)) out.push(e);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return out;
}

async function readMeta(path: string): Promise<FileMeta | null> {
  try {
    const meta = JSON.parse(await Deno.readTextFile(path)) as FileMeta;
    return typeof meta.owner === "string" && typeof meta.size === "number" ? meta : null;
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) {
      log.warn("unreadable upload metadata {path}: {error}", { path, error: String(e) });
    }
    return null;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/** Removes a file; false when it was not there. */
async function removeIfThere(path: string): Promise<boolean> {
  try {
    await Deno.remove(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.length;) at += await file.write(bytes.subarray(at));
}

/** Writes `text` to `path` whole or not at all, on disk when this resolves. */
async function writeDurably(path: string, text: string): Promise<void> {
  const tmp = `${path}.tmp`;
  const file = await Deno.open(tmp, { write: true, create: true, truncate: true });
  try {
    await writeAll(file, new TextEncoder().encode(text));
    await file.syncData();
  } finally {
    file.close();
  }
  await Deno.rename(tmp, path);
}
