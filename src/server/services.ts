// The kinds of service the server runs beside its virtual hosts, in start order (and the order
// of each host's disco#items). Each adapts its service's own API to the plug-in shape; adding a
// kind is one entry here.
import type { AdminCommand, ComponentStatus, RoomLookup, RoomStatus } from "../admin/socket.ts";
import { ComponentPool } from "../component/pool.ts";
import { MucService } from "../muc/service.ts";
import { localRoomStatus } from "../muc/room_status.ts";
import { Proxy65Service } from "../proxy65/service.ts";
import type { ServicePlugin } from "./service.ts";
import { parseJid } from "../jid/jid.ts";

/** SOCKS5 Bytestreams (XEP-0065), `proxy65:` of a host. */
export const proxy65Plugin: ServicePlugin<Proxy65Service> = {
  create: (host, local) => {
    const pc = host.config.proxy65;
    const { router, descriptors } = host.server;
    return pc ? [new Proxy65Service(pc, router, local, descriptors)] : [];
  },
  async start(proxy, host) {
    await proxy.start();
    proxy.watch(host);
  },
  item: (proxy) => ({ jid: proxy.domain, name: "SOCKS5 Bytestreams Service" }),
  stop: (proxy) => proxy.stop(),
};

/** Multi-User Chat (XEP-0045), `muc:` of a host. */
export const mucPlugin: ServicePlugin<MucService> = {
  create: (host, local) => {
    const mc = host.config.muc;
    const { router, store, serial, config, caches } = host.server;
    // In a cluster a room is read from storage by the node that runs it, when first needed.
    return mc ? [new MucService(mc, router, store, serial, local, !!config.cluster, caches)] : [];
  },
  start: (muc) => muc.start(),
  item: (muc) => ({ jid: muc.domain, name: muc.config.name }),
  stop: (muc) => muc.stop(),
  admin: (mucs) => ({
    rooms: (cmd?: AdminCommand) => roomStatus(mucs, cmd?.cmd === "rooms" ? cmd.room : undefined),
  }),
};

/** External components (XEP-0114), `components:` of a host: one balanced pool per domain. */
export const componentPlugin: ServicePlugin<ComponentPool> = {
  create: (host) => {
    const { router, config } = host.server;
    const node = config.cluster?.node;
    return host.config.components.map((cc) => new ComponentPool(cc, host.domain, router, node));
  },
  item: (pool) => ({ jid: pool.domain }),
  admin: (pools) => ({ components: () => componentStatus(pools) }),
};

export const SERVICES: ServicePlugin[] = [proxy65Plugin, mucPlugin, componentPlugin];

/** Every room (in a cluster, on every node), or one room and where it runs. */
function roomStatus(mucs: Map<string, MucService>, one?: string): RoomStatus[] | RoomLookup {
  const all = [...mucs.values()].flatMap((muc) => [
    ...localRoomStatus(muc),
    ...muc.placement?.elsewhere() ?? [],
  ]).sort((a, b) => a.jid < b.jid ? -1 : 1);
  if (one === undefined) return all;
  const jid = parseJid(one);
  const found = jid && all.find((r) => r.jid === jid.bare);
  if (found) return found;
  const node = jid && mucs.get(jid.domain)?.placement?.nodeOf(jid.local);
  return { jid: jid?.bare ?? one, node: node ?? null, running: false };
}

/** Every instance of every pool, on this node and (in a cluster) on the others. */
async function componentStatus(pools: Map<string, ComponentPool>): Promise<ComponentStatus[]> {
  const observers = new Set([...pools.values()].map((p) => p.observer));
  await Promise.all([...observers].map((o) => o?.refresh()));
  return [...pools.values()].map((pool): ComponentStatus => {
    const shares = pool.shares();
    return {
      domain: pool.domain,
      balance: pool.config.balance,
      instances: [...pool.instances.values()].map((i) => ({
        id: i.instanceId,
        node: i.node,
        remote: i.remote,
        connectedAt: new Date(i.connectedAt).toISOString(),
        received: i.stats.received,
        sent: i.stats.sent,
        share: shares.get(i.instanceId) ?? 0,
      })).sort((a, b) => a.node < b.node ? -1 : a.node > b.node ? 1 : a.id < b.id ? -1 : 1),
    };
  });
}
