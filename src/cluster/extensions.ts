// The services' cluster sides, in start order: each takes this node's ClusterNode and the running
// services of its kind, registers its frame types and follows peers coming and going. The server
// hands them over (src/server/server.ts); the services themselves know nothing of the cluster.
import type { ComponentPool } from "../component/pool.ts";
import type { MucService } from "../muc/service.ts";
import type { Proxy65Service } from "../proxy65/service.ts";
import type { ClusterNode } from "./node.ts";
import { startComponentPools } from "./component_pools.ts";
import { startMucRooms } from "./muc_rooms.ts";
import { startProxy65Relay } from "./proxy65_relay.ts";

/** The running services a cluster side may distribute, by domain. */
export interface ClusterServices {
  pools: Map<string, ComponentPool>;
  mucs: Map<string, MucService>;
  proxies: Map<string, Proxy65Service>;
}

/** Starts every service's cluster side on `node`, before its links come up. */
export async function startClusterSides(node: ClusterNode, services: ClusterServices) {
  startComponentPools(node, services.pools);
  startMucRooms(node, services.mucs);
  await startProxy65Relay(node, services.proxies);
}
