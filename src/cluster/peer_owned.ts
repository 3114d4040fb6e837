// Things peers say they own (sessions, rooms they run, replicas, component instances), by key,
// with how many each peer owns and how many bytes they hold: a peer may own at most `max` of a
// kind (cluster.max_records_per_peer) and `maxBytes` of their text; a claim beyond either is
// invalid input.
import { FrameError } from "./codec.ts";

interface Owned<V> {
  node: string;
  value: V;
  bytes: number;
}

export class PeerOwned<V> {
  #of = new Map<string, Owned<V>>();
  #totals = new Map<string, { count: number; bytes: number }>();

  constructor(readonly max: number, readonly what: string, readonly maxBytes = Infinity) {}

  get size(): number {
    return this.#of.size;
  }

  get(key: string): { node: string; value: V } | undefined {
    return this.#of.get(key);
  }

  /** The peer that owns `key`. */
  nodeOf(key: string): string | undefined {
    return this.#of.get(key)?.node;
  }

  /** How many keys `node` owns. */
  count(node: string): number {
    return this.#totals.get(node)?.count ?? 0;
  }

  /** `node` owns `key` now, held in `bytes`; a FrameError when that is over its limits. */
  set(key: string, node: string, value: V, bytes = 0): void {
    const old = this.#of.get(key);
    const same = old?.node === node;
    const total = this.#totals.get(node) ?? { count: 0, bytes: 0 };
    const count = total.count + (same ? 0 : 1);
    const held = total.bytes + bytes - (same ? old.bytes : 0);
    if (count > this.max) throw new FrameError(`more than ${this.max} ${this.what}`);
    if (held > this.maxBytes) {
      throw new FrameError(`more than ${this.maxBytes} bytes of ${this.what}`);
    }
    if (old && !same) this.#release(old);
    this.#totals.set(node, { count, bytes: held });
    this.#of.set(key, { node, value, bytes });
  }

  delete(key: string): void {
    const old = this.#of.get(key);
    if (!old) return;
    this.#of.delete(key);
    this.#release(old);
  }

  /** Forgets what `node` owns; returns it, by key. */
  drop(node: string): [string, V][] {
    const out: [string, V][] = [];
    if (!this.#totals.has(node)) return out;
    for (const [key, o] of this.#of) if (o.node === node) out.push([key, o.value]);
    for (const [key] of out) this.#of.delete(key);
    this.#totals.delete(node);
    return out;
  }

  #release(o: Owned<V>): void {
    const total = this.#totals.get(o.node)!;
    if (--total.count === 0) this.#totals.delete(o.node);
    else total.bytes -= o.bytes;
  }
}
