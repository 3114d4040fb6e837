// Multi-User Chat over a cluster, for tests: a cluster with a conference service, users online on
// given nodes, and what the nodes say about rooms through their admin sockets.
import { startCluster, type TestCluster } from "./cluster.ts";
import type { RawClient } from "./raw_client.ts";
import type { RoomLookup, RoomStatus } from "../../src/admin/socket.ts";
import { adminRequest } from "../../src/admin/socket.ts";
import type { MucCounters } from "../../src/cluster/muc_rooms.ts";
import { MUC } from "./muc.ts";

export const mucHost = (muc: Record<string, unknown> = {}) => ({
  hosts: [{ domain: "localhost", muc: { domain: MUC, message_rate: 0, ...muc } }],
});

/** A cluster of n nodes with a conference service, formed, with `users` created. */
export async function mucCluster(
  n: number,
  users: string[],
  opts: Parameters<typeof startCluster>[1] = {},
): Promise<{ c: TestCluster; clients: RawClient[] }> {
  const c = await startCluster(n, { overrides: mucHost(), ...opts });
  for (const u of users) await c.addUser(u);
  await c.formed();
  return { c, clients: [] };
}

export async function online(c: TestCluster, clients: RawClient[], user: string, i: number) {
  const r = await c.login(i, user, "r");
  clients.push(r);
  r.send("<presence/>");
  return r;
}

/** Logs users in one after another, each on its node. */
export async function onlineAll(
  c: TestCluster,
  clients: RawClient[],
  users: [string, number][],
): Promise<RawClient[]> {
  const out: RawClient[] = [];
  for (const [u, i] of users) out.push(await online(c, clients, u, i));
  return out;
}

export function rooms(c: TestCluster, i: number): Promise<RoomStatus[]> {
  return adminRequest(c.nodes[i].dataDir, { cmd: "rooms" }) as Promise<RoomStatus[]>;
}

export function lookup(c: TestCluster, i: number, room: string): Promise<RoomLookup> {
  return adminRequest(c.nodes[i].dataDir, { cmd: "rooms", room }) as Promise<RoomLookup>;
}

export async function counters(c: TestCluster, i: number): Promise<MucCounters> {
  const self = (await c.status(i)).find((m) => m.state === "self")!;
  return self.muc as MucCounters;
}

/** Waits until `ok` resolves true (it asks a running node, so it cannot be a sync `until`). */
export async function poll(ok: () => Promise<boolean>, what: string, ms = 5000): Promise<void> {
  for (const deadline = Date.now() + ms; !await ok();) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Waits until node i lists exactly `want` rooms (every node reports its rooms each second). */
export async function listed(c: TestCluster, i: number, want: number): Promise<RoomStatus[]> {
  let last: RoomStatus[] = [];
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline) {
    last = await rooms(c, i);
    if (last.length === want) return last;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`node ${i} lists ${last.length} rooms, not ${want}`);
}

/** The value `read` gives once it has not moved for 300 ms (e.g. replication settled). */
export async function settled(read: () => Promise<number>): Promise<number> {
  let last = await read();
  for (;;) {
    await new Promise((r) => setTimeout(r, 300));
    const now = await read();
    if (now === last) return now;
    last = now;
  }
}

/** A room name (`prefix` and a number) that rendezvous hashing places on node `i`. */
export async function roomOn(c: TestCluster, i: number, prefix = "room"): Promise<string> {
  for (let n = 0; n < 1000; n++) {
    if ((await lookup(c, 0, `${prefix}${n}@${MUC}`)).node === c.nodes[i].name) return prefix + n;
  }
  throw new Error(`no room name placed on ${c.nodes[i].name}`);
}

/** Waits until every node lists `room` once, run on one node, with `occupants` occupants. */
export async function oneRoom(c: TestCluster, room: string, occupants: number): Promise<void> {
  let seen: RoomStatus[][] = [];
  await poll(
    async () => {
      seen = await Promise.all(c.nodes.map((_, i) => rooms(c, i)));
      return seen.every((all) => {
        const here = all.filter((r) => r.jid === room);
        return here.length === 1 && here[0].occupants === occupants;
      });
    },
    `one room ${room} with ${occupants} occupants`,
    10_000,
  ).catch((e) => {
    throw new Error(`${e.message}: ${JSON.stringify(seen)}`);
  });
}
