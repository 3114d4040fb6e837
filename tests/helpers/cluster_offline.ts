// What a test cluster's shared store holds offline, read straight from its PostgreSQL database
// (the Store interface only takes messages, which would change what the test looks at).
import postgres from "postgres";
import { parse } from "yaml";
import type { TestCluster } from "./cluster.ts";

export interface OfflineView {
  /** Messages stored offline for `user` (the local part), not taken yet. */
  count(user: string): Promise<number>;
  close(): Promise<void>;
}

export async function offlineView(c: TestCluster): Promise<OfflineView> {
  const config = parse(await Deno.readTextFile(c.configFile)) as { storage: { url: string } };
  const sql = postgres(config.storage.url, { max: 1, onnotice: () => {} });
  return {
    async count(user) {
      const [{ n }] = await sql`SELECT count(*)::int AS n FROM offline WHERE username = ${user}`;
      return n as number;
    },
    close: () => sql.end({ timeout: 1 }),
  };
}
