// The kinds of service the server runs beside its virtual hosts, in start order (and the order
// of each host's disco#items). Each adapts its service's own API to the plug-in shape; adding a
// kind is one entry here.
import type { ComponentStatus, RoomStatus } from "../admin/socket.ts";
import { ComponentPool } from "../component/pool.ts";
import { MucService } from "../muc/service.ts";
import { Proxy65Service } from "../proxy65/service.ts";
import type { ServicePlugin } from "./service.ts";

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
    const { router, store, serial } = host.server;
    return mc ? [new MucService(mc, router, store, serial, local)] : [];
  },
  start: (muc) => muc.start(),
  item: (muc) => ({ jid: muc.domain, name: muc.config.name }),
  stop: (muc) => muc.stop(),
  admin: (mucs) => ({ rooms: () => roomStatus(mucs) }),
};

/** External components (XEP-0114), `components:` of a host: one balanced pool per domain. */
export const componentPlugin: ServicePlugin<ComponentPool> = {
  create: (host) =>
    host.config.components.map((cc) => new ComponentPool(cc, host.domain, host.server.router)),
  item: (pool) => ({ jid: pool.domain }),
  admin: (pools) => ({ components: () => componentStatus(pools) }),
};

export const SERVICES: ServicePlugin[] = [proxy65Plugin, mucPlugin, componentPlugin];

function roomStatus(mucs: Map<string, MucService>): RoomStatus[] {
  const out: RoomStatus[] = [];
  for (const muc of mucs.values()) {
    for (const room of muc.rooms.values()) {
      out.push({
        jid: room.jid.bare,
        name: room.config.name,
        occupants: room.occupantCount,
        persistent: room.config.persistent,
        public: room.config.public,
        membersOnly: room.config.membersOnly,
        locked: room.locked,
      });
    }
  }
  return out.sort((a, b) => a.jid < b.jid ? -1 : 1);
}

function componentStatus(pools: Map<string, ComponentPool>): ComponentStatus[] {
  return [...pools.values()].map((pool): ComponentStatus => ({
    domain: pool.domain,
    balance: pool.config.balance,
    instances: [...pool.instances.values()].map((i) => ({
      id: i.id,
      remote: i.remote,
      connectedAt: new Date(i.connectedAt).toISOString(),
      received: i.stats.received,
      sent: i.stats.sent,
    })),
  }));
}
