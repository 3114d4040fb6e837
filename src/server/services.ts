// The kinds of service the server runs beside its virtual hosts, in start order (and the order
// of each host's disco#items). Each adapts its service's own API to the plug-in shape and names
// its two distributions (alone, and over a cluster); adding a kind is one entry here.
import type { AdminCommand, ComponentStatus, RoomLookup, RoomStatus } from "../admin/socket.ts";
import { ComponentPool, type PoolDistribution } from "../component/pool.ts";
import { LocalPools } from "../component/local_pools.ts";
import { MucService, type RoomDistribution } from "../muc/service.ts";
import { LocalRooms } from "../muc/local_rooms.ts";
import { localRoomStatus } from "../muc/room_status.ts";
import { Proxy65Service, type StreamDistribution } from "../proxy65/service.ts";
import { LocalStreams } from "../proxy65/local_streams.ts";
import { ComponentLinks } from "../cluster/component_pools.ts";
import { MucRooms } from "../cluster/muc_rooms.ts";
import { Proxy65Cluster } from "../cluster/proxy65_relay.ts";
import type { ServicePlugin } from "./service.ts";
import { parseJid } from "../jid/jid.ts";
import { RoomArchive } from "../mam/room_archive.ts";
import { STORES } from "../storage/store.ts";
import { type UploadDistribution, UploadService } from "../upload/service.ts";
import { SharedFiles } from "../upload/distribution.ts";
import { uploadRoute } from "../upload/http.ts";
import { logFailure } from "../core/failure.ts";

/** SOCKS5 Bytestreams (XEP-0065), `proxy65:` of a host. */
export const proxy65Plugin: ServicePlugin<Proxy65Service, StreamDistribution> = {
  local: () => new LocalStreams(),
  clustered: (node) => new Proxy65Cluster(node),
  create: (host, local, streams) => {
    const pc = host.config.proxy65;
    const { router, descriptors } = host.server;
    return pc ? [new Proxy65Service(pc, router, local, descriptors, streams)] : [];
  },
  async start(proxy, host) {
    await proxy.start();
    proxy.watch(host);
  },
  item: (proxy) => ({ jid: proxy.domain, name: "SOCKS5 Bytestreams Service" }),
  stop: (proxy) => proxy.stop(),
};

/** Multi-User Chat (XEP-0045), `muc:` of a host. */
export const mucPlugin: ServicePlugin<MucService, RoomDistribution> = {
  local: () => new LocalRooms(),
  clustered: (node) => new MucRooms(node),
  create: (host, local, rooms) => {
    const mc = host.config.muc;
    if (!mc) return [];
    const { router, store, serial, caches, secret, config, archive: writer } = host.server;
    const mam = config.mam;
    const archive = mam.enabled
      ? new RoomArchive(writer, store.archive(STORES.mam), mam.max_page, mam.rooms)
      : undefined;
    return [new MucService(mc, router, store, serial, local, rooms, caches, { secret, archive })];
  },
  start: (muc) => muc.start(),
  item: (muc) => ({ jid: muc.domain, name: muc.config.name }),
  stop: (muc) => muc.stop(),
  admin: (mucs) => ({
    rooms: (cmd?: AdminCommand) => roomStatus(mucs, cmd?.cmd === "rooms" ? cmd.room : undefined),
  }),
};

/** External components (XEP-0114), `components:` of a host: one balanced pool per domain. */
export const componentPlugin: ServicePlugin<ComponentPool, PoolDistribution> = {
  local: () => new LocalPools(),
  clustered: (node) => new ComponentLinks(node),
  create: (host, _local, pools) => {
    const { router, config } = host.server;
    const node = config.cluster?.node;
    return host.config.components.map((cc) =>
      new ComponentPool(cc, host.domain, router, pools, node)
    );
  },
  item: (pool) => ({ jid: pool.domain }),
  admin: (pools) => ({ components: () => componentStatus(pools) }),
};

/** HTTP File Upload (XEP-0363), `upload:` of a host: slots over XMPP, files over HTTP. */
export const uploadPlugin: ServicePlugin<UploadService, UploadDistribution> = {
  // The files and the key of the slots are in the store every node shares: nothing else to share.
  local: () => new SharedFiles(),
  clustered: () => new SharedFiles(),
  create: (host, _local, files) => {
    const uc = host.config.upload;
    if (!uc) return [];
    const { config, router, store, secret, counters } = host.server;
    const url = () => host.server.httpUrl(host.domain);
    const deps = { config, router, store, secret, counts: counters.uploads, url };
    return [new UploadService(uc, host.domain, deps, files)];
  },
  async start(upload, host) {
    await upload.start();
    host.events.on("account/deleted", (jid) => {
      upload.forget(jid).catch((e) => logFailure(`removing the uploads of ${jid.bare}`, e));
    });
  },
  item: (upload) => ({ jid: upload.domain, name: "HTTP File Upload" }),
  stop: (upload) => upload.stop(),
  routes: (upload) => [{ prefix: upload.path, handler: uploadRoute(upload) }],
};

export const SERVICES: ServicePlugin[] = [proxy65Plugin, mucPlugin, componentPlugin, uploadPlugin];

/** Every room (in a cluster, on every node), or one room and where it runs. */
function roomStatus(mucs: Map<string, MucService>, one?: string): RoomStatus[] | RoomLookup {
  const all = [...mucs.values()].flatMap((muc) => [
    ...localRoomStatus(muc),
    ...muc.distribution.elsewhere(muc),
  ]).sort((a, b) => a.jid < b.jid ? -1 : 1);
  if (one === undefined) return all;
  const jid = parseJid(one);
  const found = jid && all.find((r) => r.jid === jid.bare);
  if (found) return found;
  const muc = jid && mucs.get(jid.domain);
  const node = muc ? muc.distribution.nodeOf(muc, jid.local) : null;
  return { jid: jid?.bare ?? one, node, running: false };
}

/** Every instance of every pool, on this node and (in a cluster) on the others. */
async function componentStatus(pools: Map<string, ComponentPool>): Promise<ComponentStatus[]> {
  const distributions = new Set([...pools.values()].map((p) => p.distribution));
  await Promise.all([...distributions].map((d) => d.refresh()));
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
