// <data_dir>/parley.pid: the server's process id while it runs, so that operators can signal the
// server itself (`kill $(cat data/parley.pid)`). Started through `deno task` or `npx … task`, the
// PID a shell or process manager sees is the wrapper's, and signalling the wrapper does not reach
// the server.
import { join } from "node:path";

export class PidFile {
  private constructor(readonly path: string) {}

  /**
   * Writes this process's id, atomically (a reader never sees a partial file). Call it once the
   * server is listening: a second server on the same data directory fails to bind before it
   * could take the file from the first, while a stale file left by a crash is simply replaced.
   */
  static async write(dataDir: string): Promise<PidFile> {
    const path = join(dataDir, "parley.pid");
    const tmp = `${path}.${Deno.pid}.tmp`;
    await Deno.writeTextFile(tmp, `${Deno.pid}\n`);
    await Deno.rename(tmp, path);
    return new PidFile(path);
  }

  /** Removes the file on a clean shutdown, unless another process has taken it over. */
  async remove(): Promise<void> {
    try {
      if ((await Deno.readTextFile(this.path)).trim() === String(Deno.pid)) {
        await Deno.remove(this.path);
      }
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
}
