// The message archive (XEP-0313) over a cluster, for tests/interop/cluster_mam_clients_test.ts:
// a cluster whose nodes listen on 127.0.0.1 (each on a port of its own, as stream management's
// ResumingClient connects there) with a conference service and resumable sessions; logins on a
// node's port; a wait until a node routes to a session of another node; the slixmpp archive
// client (tests/interop/mam_client.py) run as a process, its JSON lines parsed; raw paging
// through a room's archive; and the check that a list holds every expected item once, in order.
import { DOMAIN, startCluster, type TestCluster } from "./cluster.ts";
import { LOOPBACK_C2S, SM_SETTINGS } from "./cluster_sm.ts";
import { mucHost } from "./cluster_muc.ts";
import { mamQuery, type MamResult } from "./mam.ts";
import { RawClient } from "./raw_client.ts";
import { until } from "./until.ts";
import type { Element } from "../../src/xml/element.ts";

/** Three nodes on 127.0.0.1, rooms, resumable sessions (300 s); formed, with `users` created. */
export async function mamCluster(users: string[]): Promise<TestCluster> {
  const c = await startCluster(3, {
    overrides: { ...LOOPBACK_C2S, ...mucHost(), stream_management: SM_SETTINGS },
  });
  try {
    for (const u of [...users, PROBE]) await c.addUser(u);
    await c.formed();
  } catch (e) {
    await c.stop();
    throw e;
  }
  return c;
}

/** Logs `user` in on node i (its c2s port on 127.0.0.1), bound to `resource`. */
export async function loginOn(
  c: TestCluster,
  i: number,
  user: string,
  resource: string,
): Promise<RawClient> {
  const r = await RawClient.connect(c.nodes[i].port);
  await r.open();
  if (!await r.scram(user, "secret")) throw new Error(`login of ${user} on n${i + 1} failed`);
  await r.open();
  await r.bind(resource);
  return r;
}

/** The account that probes routes (created by mamCluster). */
const PROBE = "probe";
let probes = 0;

/**
 * Waits until each of `nodes` delivers to `target`'s session a message addressed to `to` (its
 * bare JID: then the node sees it available; or its full JID): a probe logged in on the node
 * sends headlines (never archived) until one arrives. Sessions and their availability reach the
 * other nodes a little after they happen here; a message routed before would be stored offline.
 */
export async function routedFrom(
  c: TestCluster,
  nodes: number[],
  target: RawClient,
  to: string,
  ms = 5000,
): Promise<void> {
  for (const i of nodes) {
    const probe = await loginOn(c, i, PROBE, `p${++probes}`);
    try {
      const deadline = Date.now() + ms;
      for (let n = 0;; n++) {
        const body = `probe ${probes}.${n}`;
        probe.send(`<message to='${to}' type='headline'><body>${body}</body></message>`);
        const arrived = await target.waitFor(
          (e) => e.name === "message" && e.childText("body") === body,
          Math.min(200, Math.max(1, deadline - Date.now())),
          body,
        ).then(() => true, () => false);
        if (arrived) break;
        if (Date.now() > deadline) {
          throw new Error(`n${i + 1} did not deliver to ${target.jid} (as ${to}) in ${ms} ms`);
        }
      }
    } finally {
      probe.close();
    }
  }
  // Probes that arrived late are not the test's traffic.
  target.received.splice(
    0,
    target.received.length,
    ...target.received.filter((e) => !e.childText("body")?.startsWith("probe ")),
  );
}

/** One result line of mam_client.py query. */
export interface PyResult {
  id: string;
  from: string | null;
  to: string | null;
  body: string | null;
  stanza_id: string | null;
  origin_id: string | null;
  stamp: string | null;
  page: number;
}

export interface PyQuery {
  results: PyResult[];
  done: { done: true; count: number; pages: number; complete: boolean };
}

const SCRIPT = new URL("../interop/mam_client.py", import.meta.url).pathname;

/**
 * Runs `mam_client.py COMMAND --jid JID --password secret --host 127.0.0.1 --port <node i's>
 * ARGS…`; every JSON line it printed, in order. Fails with its output when it did not exit 0.
 */
export async function mamClient(
  c: TestCluster,
  i: number,
  command: "send" | "query",
  jid: string,
  args: string[],
): Promise<Record<string, unknown>[]> {
  const out = await new Deno.Command("/usr/bin/python3", {
    args: [
      SCRIPT,
      command,
      "--jid",
      jid,
      "--password",
      "secret",
      "--host",
      "127.0.0.1",
      "--port",
      String(c.nodes[i].port),
      "--deadline",
      "30",
      ...args,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  if (out.code !== 0) {
    const stderr = new TextDecoder().decode(out.stderr).slice(-3000);
    throw new Error(
      `mam_client.py ${command} as ${jid} on n${i + 1} exited with ${out.code}: ` +
        `${stdout.slice(-3000)}\n${stderr}`,
    );
  }
  return stdout.trim().split("\n").filter((l) => l).map((l) => JSON.parse(l));
}

/** `mam_client.py query` as `jid` on node i, pages of `page`; `to` names a room's archive. */
export async function pyQuery(
  c: TestCluster,
  i: number,
  jid: string,
  page: number,
  to?: string,
): Promise<PyQuery> {
  const lines = await mamClient(c, i, "query", jid, [
    "--page",
    String(page),
    ...(to ? ["--to", to] : []),
  ]);
  const done = lines.at(-1) as PyQuery["done"] | undefined;
  if (!done?.done) throw new Error(`mam_client.py query ended without done: ${lines.at(-1)}`);
  return { results: lines.slice(0, -1) as unknown as PyResult[], done };
}

/** Pages forward through an archive (`to`: a room's) from a raw client, `max` a page. */
export async function rawPages(
  r: RawClient,
  max: number,
  to?: string,
): Promise<{ results: MamResult[]; pages: number }> {
  const results: MamResult[] = [];
  let after: string | undefined;
  for (let pages = 1; pages <= 1000; pages++) {
    const page = await mamQuery(r, { to, max, after });
    if (page.answer.attrs.type !== "result") throw new Error(`query answered ${page.answer}`);
    results.push(...page.results);
    if (page.complete || !page.last) return { results, pages };
    after = page.last;
  }
  throw new Error("more than 1000 pages");
}

/** Waits until `count()` resolves `n` (an archive's writes are batched, after delivery). */
export async function reaches(
  count: () => Promise<number | undefined>,
  n: number,
  what: string,
  ms = 10_000,
): Promise<void> {
  let last: number | undefined;
  const deadline = Date.now() + ms;
  while ((last = await count()) !== n) {
    if (Date.now() > deadline) throw new Error(`${what}: ${last}, not ${n}, after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * What is wrong with `got` where every item of `want` should be once, in `want`'s order: "" when
 * nothing; otherwise the duplicates, the missing, the unexpected and the first places out of
 * order.
 */
export function orderProblems(got: (string | null | undefined)[], want: string[]): string {
  const index = new Map(want.map((w, i) => [w, i]));
  const counts = new Map<string | null | undefined, number>();
  for (const g of got) counts.set(g, (counts.get(g) ?? 0) + 1);
  const problems: string[] = [];
  const dup = [...counts].filter(([, n]) => n > 1).map(([b, n]) => `${b}×${n}`);
  if (dup.length) problems.push(`duplicated (${dup.length}): ${dup.slice(0, 30).join(", ")}`);
  const missing = want.filter((w) => !counts.has(w));
  if (missing.length) {
    problems.push(`missing (${missing.length}): ${missing.slice(0, 40).join(", ")}`);
  }
  const extra = got.filter((g) => g == null || !index.has(g));
  if (extra.length) problems.push(`unexpected (${extra.length}): ${extra.slice(0, 10).join(", ")}`);
  const disorder: string[] = [];
  for (let i = 1; i < got.length && disorder.length < 10; i++) {
    const [a, b] = [index.get(got[i - 1]!), index.get(got[i]!)];
    if (a !== undefined && b !== undefined && b <= a) {
      disorder.push(`${got[i - 1]} then ${got[i]} (at ${i})`);
    }
  }
  if (disorder.length) problems.push(`out of order: ${disorder.join(", ")}`);
  return problems.join("; ");
}

/** Chat messages `r` received from `from` (a full JID, or a bare one for any of its resources). */
export function chatFrom(r: RawClient, from: string): Element[] {
  return r.received.filter((e) =>
    e.name === "message" && e.attrs.type === "chat" &&
    (e.attrs.from === from || e.attrs.from?.startsWith(`${from}/`) === true)
  );
}

/** How many times each of these strings occurs, for those more than once ("x×2, y×3"). */
export function repeats(items: string[]): string {
  const n = new Map<string, number>();
  for (const i of items) n.set(i, (n.get(i) ?? 0) + 1);
  return [...n].filter(([, k]) => k > 1).map(([i, k]) => `${i}×${k}`).join(", ");
}

export { DOMAIN, until };
