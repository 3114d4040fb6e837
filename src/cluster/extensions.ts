// The services' cluster sides, in start order: each takes this node's ClusterNode and the running
// services, registers its frame types (ranges in wire.ts) and follows peers coming and going.
// Adding one is one entry here; the services themselves know nothing of the cluster.
import type { Services } from "../server/service.ts";
import type { ClusterNode } from "./node.ts";
import { componentCluster } from "./component_pools.ts";
import { mucCluster } from "./muc_rooms.ts";
import { proxy65Cluster } from "./proxy65_relay.ts";

export interface ClusterExtension {
  readonly name: string;
  start(node: ClusterNode, services: Services): void | Promise<void>;
}

export const CLUSTER_EXTENSIONS: ClusterExtension[] = [
  componentCluster,
  mucCluster,
  proxy65Cluster,
];
