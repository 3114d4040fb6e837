// A minimal XMPP client on Deno's native sockets for the load generator: PLAIN login without TLS,
// ordered writes, and a read loop that hands over raw text. Its per-read cost is a fraction of
// node:net's, which matters when one generator core reads a thousand sockets.
import { HEADER } from "../tests/helpers/raw_client.ts";
import { NS } from "../src/xml/ns.ts";
import { writeAll } from "../src/stream/write_all.ts";

const encoder = new TextEncoder();
const latin1 = new TextDecoder("latin1"); // only ASCII markup is looked at

export class NativeClient {
  #writes: Promise<void> = Promise.resolve();
  #buf = new Uint8Array(1 << 16);
  #setup = "";

  private constructor(readonly conn: Deno.TcpConn) {}

  static async login(port: number, user: string, password: string, resource: string) {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    conn.setNoDelay(true);
    const c = new NativeClient(conn);
    c.send(
      HEADER() +
        `<auth xmlns='${NS.sasl}' mechanism='PLAIN'>${btoa(`\0${user}\0${password}`)}</auth>`,
    );
    await c.until("<success");
    c.send(
      HEADER() +
        `<iq type='set' id='bind'><bind xmlns='${NS.bind}'><resource>${resource}</resource></bind></iq>`,
    );
    await c.until("</iq>");
    return c;
  }

  /** Queues `xml`; writes go out in order, each completely. */
  send(xml: string): void {
    const data = encoder.encode(xml);
    this.#writes = this.#writes.then(() => writeAll(this.conn, data));
  }

  /** Setup only: reads until `marker` has arrived and returns everything read. */
  async until(marker: string): Promise<string> {
    while (!this.#setup.includes(marker)) {
      const n = await this.conn.read(this.#buf);
      if (n === null) throw new Error(`connection closed while waiting for ${marker}`);
      this.#setup += latin1.decode(this.#buf.subarray(0, n));
    }
    const text = this.#setup;
    this.#setup = "";
    return text;
  }

  /** Reads for good: `fn` gets whole stanzas' text and the time the bytes arrived. */
  async read(fn: (text: string, now: number) => void): Promise<void> {
    let tail = "";
    while (true) {
      const n = await this.conn.read(this.#buf).catch(() => null);
      if (n === null) return;
      const now = performance.now();
      const text = tail + latin1.decode(this.#buf.subarray(0, n));
      const end = Math.max(
        text.lastIndexOf("</message>") + 10,
        text.lastIndexOf("</presence>") + 11,
      );
      if (end < 11) {
        tail = text;
        continue;
      }
      tail = text.slice(end);
      fn(text.slice(0, end), now);
    }
  }
}
