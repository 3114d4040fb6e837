// `parley user add|passwd|del|list`: account administration straight on the store, whether or not
// the server (or any node of a cluster sharing a PostgreSQL store) runs: SQLite in WAL mode lets
// this run while the server is up, and the server reads credentials at each login.
import type { Config } from "../config/schema.ts";
import { parseJid } from "../jid/jid.ts";
import { openStore } from "../storage/open.ts";
import { openFileStore } from "../upload/open.ts";
import { deriveCredentials } from "../sasl/scram_keys.ts";
import { readNewPassword } from "./password_prompt.ts";

export async function userCommand(
  config: Config,
  action: string,
  target: string | undefined,
  password: string | undefined,
): Promise<number> {
  const store = await openStore(config);
  try {
    if (action === "list") {
      const domains = target ? [target] : config.hosts.map((h) => h.domain);
      for (const d of domains) {
        for (const u of await store.listAccounts(d)) console.log(`${u}@${d}`);
      }
      return 0;
    }
    const jid = parseJid(target ?? "");
    if (!jid || jid.isDomain || !jid.isBare) {
      console.error(`error: expected a bare JID user@domain, got "${target ?? ""}"`);
      return 2;
    }
    if (!config.hosts.some((h) => h.domain === jid.domain)) {
      console.error(`error: ${jid.domain} is not a host in the configuration`);
      return 2;
    }
    if (action === "del") {
      const removed = await store.deleteAccount(jid.local, jid.domain);
      if (!removed) return fail(`no such user ${jid.bare}`);
      const n = removed.archived;
      const messages = `${n} archived message${n === 1 ? "" : "s"}`;
      // Uploaded files are not in the Store's tables: they go through the file store.
      const files = await openFileStore(config);
      const u = await files.purge(jid.bare).finally(() => files.close());
      const uploads = `${u} uploaded file${u === 1 ? "" : "s"}`;
      console.log(
        u === 0
          ? `deleted ${jid.bare} and ${messages}`
          : `deleted ${jid.bare}, ${messages} and ${uploads}`,
      );
      return 0;
    }
    const pw = password ?? await readNewPassword();
    const creds = await deriveCredentials(pw, config.auth.scram_iterations);
    if (!creds) return fail("the password is empty or has characters SASLprep forbids");
    if (action === "add") {
      if (!await store.createAccount(jid.local, jid.domain, creds)) {
        return fail(`${jid.bare} exists`);
      }
      console.log(`added ${jid.bare}`);
    } else {
      if (!await store.setCredentials(jid.local, jid.domain, creds)) {
        return fail(`no such user ${jid.bare}`);
      }
      console.log(`changed the password of ${jid.bare}`);
    }
    return 0;
  } finally {
    await store.close();
  }
}

function fail(msg: string): number {
  console.error(`error: ${msg}`);
  return 1;
}
