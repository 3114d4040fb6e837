// Things peers say they own (rooms they run, replicas they hold), by key, with how many each
// peer owns: a peer may own at most `max` (cluster.max_records_per_peer); a claim beyond that is
// invalid input.
import { FrameError } from "./codec.ts";

export class PeerOwned<V> {
  #of = new Map<string, { node: string; value: V }>();
  #counts = new Map<string, number>();

  constructor(readonly max: number, readonly what: string) {}

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

  has(key: string): boolean {
    return this.#of.has(key);
  }

  /** `node` owns `key` now; a FrameError when it would own more than `max`. */
  set(key: string, node: string, value: V): void {
    const old = this.#of.get(key)?.node;
    if (old !== node) {
      const n = this.#counts.get(node) ?? 0;
      if (n >= this.max) throw new FrameError(`more than ${this.max} ${this.what}`);
      this.#counts.set(node, n + 1);
      if (old !== undefined) this.#uncount(old);
    }
    this.#of.set(key, { node, value });
  }

  delete(key: string): void {
    const old = this.#of.get(key)?.node;
    if (old === undefined) return;
    this.#of.delete(key);
    this.#uncount(old);
  }

  /** Forgets what `node` owns; returns it, by key. */
  drop(node: string): [string, V][] {
    const out: [string, V][] = [];
    if (!this.#counts.has(node)) return out;
    for (const [key, o] of this.#of) if (o.node === node) out.push([key, o.value]);
    for (const [key] of out) this.#of.delete(key);
    this.#counts.delete(node);
    return out;
  }

  #uncount(node: string): void {
    const n = (this.#counts.get(node) ?? 1) - 1;
    if (n > 0) this.#counts.set(node, n);
    else this.#counts.delete(node);
  }
}
