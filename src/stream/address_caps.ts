// Connections counted per client address, against `limits.connections_per_ip`: the TCP listeners
// count sockets, the http listener counts the XML streams it carries per client (behind a
// trusted proxy: per forwarded address). One count, released once, whatever path ends it.
export class AddressCaps {
  #perIp = new Map<string, number>();

  constructor(readonly max: number) {}

  /** Counts one more from `ip`: its release, and whether `ip` is now over the cap. */
  take(ip: string): { release: () => void; over: boolean } {
    const n = (this.#perIp.get(ip) ?? 0) + 1;
    this.#perIp.set(ip, n);
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      const left = (this.#perIp.get(ip) ?? 1) - 1;
      if (left) this.#perIp.set(ip, left);
      else this.#perIp.delete(ip);
    };
    return { release, over: n > this.max };
  }
}
