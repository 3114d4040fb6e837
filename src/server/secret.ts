// The server's persistent secret (32 random bytes in data_dir/secret, owner-only): answers about
// unknown accounts (fake SCRAM salts and iteration counts) stay the same across restarts, so they
// cannot be told apart from real ones by watching them change.
import { join } from "node:path";
import { randomBytes } from "node:crypto";

const SIZE = 32;

export async function loadSecret(dataDir: string): Promise<Uint8Array> {
  const path = join(dataDir, "secret");
  try {
    const bytes = await Deno.readFile(path);
    if (bytes.length === SIZE) return bytes;
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  await Deno.mkdir(dataDir, { recursive: true });
  const bytes = new Uint8Array(randomBytes(SIZE));
  const tmp = path + ".tmp";
  await Deno.writeFile(tmp, bytes, { mode: 0o600 });
  await Deno.rename(tmp, path);
  return bytes;
}
