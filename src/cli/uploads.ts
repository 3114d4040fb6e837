// `parley upload list|purge USER@HOST`: an account's uploaded files (XEP-0363), straight from where
// they are kept (the shared PostgreSQL, or the single node's `data_dir/uploads`), whether or not
// the server runs. A purge is seen by a running single node's quota at its next retention pass
// (docs/operating.md), by a cluster's at once.
import type { Config } from "../config/schema.ts";
import { parseJid } from "../jid/jid.ts";
import { openFileStore } from "../upload/open.ts";

export async function uploadCommand(
  config: Config,
  action: string,
  target: string | undefined,
  json: boolean,
): Promise<number> {
  const jid = parseJid(target ?? "");
  if (!jid || jid.isDomain || !jid.isBare) {
    console.error(`error: expected a bare JID user@domain, got "${target ?? ""}"`);
    return 2;
  }
  if (!config.hosts.some((h) => h.domain === jid.domain)) {
    console.error(`error: ${jid.domain} is not a host in the configuration`);
    return 2;
  }
  const files = await openFileStore(config);
  try {
    if (action === "purge") {
      const n = await files.purge(jid.bare);
      console.log(`removed ${n} uploaded file${n === 1 ? "" : "s"} of ${jid.bare}`);
      return 0;
    }
    const list = await files.list(jid.bare);
    if (json) {
      console.log(JSON.stringify(list.map((f) => ({ ...f, at: new Date(f.at).toISOString() }))));
      return 0;
    }
    const rows = list.map((f) => [
      f.id,
      new Date(f.at).toISOString(),
      String(f.size),
      f.type,
      f.filename,
    ]);
    const head = ["ID", "STORED", "SIZE", "TYPE", "NAME"];
    const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
    for (const r of [head, ...rows]) {
      console.log(r.map((c, i) => i === r.length - 1 ? c : c.padEnd(widths[i])).join("  "));
    }
    const bytes = list.reduce((n, f) => n + f.size, 0);
    console.log(`${list.length} file${list.length === 1 ? "" : "s"}, ${bytes} bytes`);
    return 0;
  } finally {
    await files.close();
  }
}
