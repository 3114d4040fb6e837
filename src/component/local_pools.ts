// Component pools on one node alone (the local PoolDistribution): a pool holds only the
// instances connected here, and there is nobody to tell or ask. A cluster's distribution is
// src/cluster/component_pools.ts.
import type { PoolDistribution } from "./pool.ts";

export class LocalPools implements PoolDistribution {
  serve(): void {}
  joined(): void {}
  left(): void {}

  refresh(): Promise<void> {
    return Promise.resolve();
  }
}
