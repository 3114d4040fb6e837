// The SOCKS5 proxy on one node alone (the local StreamDistribution): its relay holds every
// connection and decides every activation. A cluster's distribution is
// src/cluster/proxy65_relay.ts.
import type { Activation } from "./relay.ts";
import type { Proxy65Service, StreamDistribution } from "./service.ts";

export class LocalStreams implements StreamDistribution {
  serve(): void {}

  activate(proxy: Proxy65Service, hash: string, owner: string): Activation {
    return proxy.relay.activate(hash, owner);
  }

  activeElsewhere(): boolean {
    return false;
  }
}
