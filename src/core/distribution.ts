// How a service is spread over the nodes of a cluster, declared the same way for every kind of
// service. A kind declares what it asks of "the other nodes" as an interface extending
// Distribution, with a local implementation beside the service (one node: nothing elsewhere).
// The server hands each service one at construction: the local one, or in a cluster the
// cluster's (src/cluster/). The service calls it and never learns which one it has.
export interface Distribution<S> {
  /** `service` goes through this distribution from now on (its constructor calls this once). */
  serve(service: S): void;
  /** Binds what it needs once the kind's services have started, before any peer link is up. */
  start?(): Promise<void>;
}
