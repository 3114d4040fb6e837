// A TCP proxy that injects faults between two endpoints in a test:
// - pass: bytes flow both ways (with backpressure);
// - delay: each chunk is forwarded `delayMs` later, in order;
// - blackhole: nothing moves and sockets stay open, as on a partition (reading stops, so
//   senders fill their buffers; bytes sent meanwhile arrive once the mode is back to pass, as
//   TCP retransmissions would); new connections hang;
// - cut: every connection is closed and new ones are closed on accept.
import net from "node:net";

export type FaultMode = "pass" | "delay" | "blackhole" | "cut";

interface Pair {
  client: net.Socket;
  server: net.Socket;
}

export class FaultProxy {
  mode: FaultMode = "pass";
  delayMs = 0;
  #pairs = new Set<Pair>();

  private constructor(readonly server: net.Server, readonly host: string, readonly port: number) {}

  /** Listens on `host` (an ephemeral port) and forwards to `target`. */
  static start(target: { host: string; port: number }, host = "127.0.0.1"): Promise<FaultProxy> {
    let proxy: FaultProxy;
    const server = net.createServer((client) => proxy.#accept(client, target));
    return new Promise((resolve) => {
      server.listen(0, host, () => {
        proxy = new FaultProxy(server, host, (server.address() as net.AddressInfo).port);
        resolve(proxy);
      });
    });
  }

  get address(): string {
    return `${this.host}:${this.port}`;
  }

  /** Switches every connection, current and future, to `mode`. */
  set(mode: FaultMode, delayMs = 0): void {
    this.mode = mode;
    this.delayMs = delayMs;
    for (const pair of this.#pairs) {
      if (mode === "cut") this.#destroy(pair);
      else if (mode === "blackhole") [pair.client, pair.server].forEach((s) => s.pause());
      else [pair.client, pair.server].forEach((s) => s.resume());
    }
  }

  close(): Promise<void> {
    for (const pair of this.#pairs) this.#destroy(pair);
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  #accept(client: net.Socket, target: { host: string; port: number }): void {
    if (this.mode === "cut") return void client.destroy();
    const pair = { client, server: net.connect(target.port, target.host) };
    this.#pairs.add(pair);
    this.#pipe(client, pair.server);
    this.#pipe(pair.server, client);
    for (const s of [client, pair.server]) {
      s.on("error", () => {});
      s.on("close", () => this.#destroy(pair));
      if (this.mode === "blackhole") s.pause();
    }
  }

  #pipe(from: net.Socket, to: net.Socket): void {
    from.on("data", (chunk: Uint8Array) => {
      if (this.mode === "delay") {
        setTimeout(() => to.destroyed || to.write(chunk), this.delayMs);
      } else if (!to.write(chunk)) {
        from.pause();
        to.once("drain", () => this.mode !== "blackhole" && from.resume());
      }
    });
  }

  #destroy(pair: Pair): void {
    this.#pairs.delete(pair);
    pair.client.destroy();
    pair.server.destroy();
  }
}
