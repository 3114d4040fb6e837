// Abuse: an external component floods messages at a user whose offline store is full. Every
// message must be refused with service-unavailable (XEP-0160), cheaply and in slices, so other
// users never wait for the server and the component is not dropped for what the server did.
import assert from "node:assert/strict";
import net from "node:net";
import { createHash } from "node:crypto";
import { abuseServer, MAX_STALL_MS, stallProbe } from "../helpers/abuse.ts";
import { serverTest } from "../helpers/server.ts";
import { RawClient } from "../helpers/raw_client.ts";
import { until } from "../helpers/until.ts";
import { NS } from "../../src/xml/ns.ts";

const STORED = 10;
const FLOOD = 100_000;
const REFUSAL = "<service-unavailable";

/** A component connection that counts the refusals it is sent without parsing them. */
class CountingComponent {
  refused = 0;
  handshaken = false;
  closed = false;
  #text = "";

  private constructor(readonly socket: net.Socket) {
    socket.setEncoding("utf8");
    socket.on("data", (s: string) => {
      // The condition's tag may span two reads: keep a tail too short to hold a whole one.
      const text = this.#text + s;
      this.refused += text.split(REFUSAL).length - 1;
      this.handshaken ||= text.includes("<handshake/>");
      this.#text = text.slice(1 - REFUSAL.length);
    });
    socket.on("close", () => this.closed = true);
    socket.on("error", () => {});
  }

  static async login(port: number, domain: string, secret: string): Promise<CountingComponent> {
    const socket = net.connect(port, "127.0.0.1");
    let header = "";
    const id = await new Promise<string>((resolve, reject) => {
      socket.setEncoding("utf8");
      const onData = (s: string) => {
        header += s;
        const m = /<stream:stream[^>]* id='([^']+)'/.exec(header);
        if (m) {
          socket.off("data", onData);
          resolve(m[1]);
        }
      };
      socket.on("data", onData);
      socket.once("error", reject);
      socket.write(
        `<stream:stream xmlns='jabber:component:accept' xmlns:stream='${NS.streams}' to='${domain}'>`,
      );
    });
    const c = new CountingComponent(socket);
    socket.write(`<handshake>${createHash("sha1").update(id + secret).digest("hex")}</handshake>`);
    await c.until(() => c.handshaken, 5000, "handshake");
    return c;
  }

  /** Writes `data`, then waits while the kernel's buffer is full (the server reads at its pace). */
  async write(data: string): Promise<void> {
    if (!this.socket.write(data)) {
      await this.until(() => !this.socket.writableNeedDrain, 10_000, "the server to read");
    }
  }

  /** Waits for `pred`; fails at once if the server closes the connection. */
  until(pred: () => boolean, ms: number, what: string): Promise<void> {
    return until(
      () => {
        if (this.closed) throw new Error(`component closed while waiting for ${what}`);
        return pred();
      },
      what,
      ms,
    );
  }
}

const message = (i: number) =>
  `<message from='bot@flood.localhost' to='victim@localhost' type='chat' id='f${i}'>` +
  `<body>flood ${i}</body></message>`;

serverTest(
  "abuse: a component flooding a full offline store gets its errors and stalls nobody",
  async () => {
    const server = await abuseServer({
      hosts: [{
        domain: "localhost",
        components: [{ domain: "flood.localhost", secret: "s" }],
      }],
      listeners: [
        { type: "c2s", bind: "127.0.0.1", port: 0, starttls: "optional", plain_without_tls: true },
        { type: "c2s_tls", bind: "127.0.0.1", port: 0 },
        { type: "component", bind: "127.0.0.1", port: 0 },
      ],
      limits: { max_offline_messages: STORED },
    }, ["probe", "victim", "alice", "bob"]);
    const opened: { close(): void }[] = [];
    try {
      const bot = await CountingComponent.login(server.ports[2], "flood.localhost", "s");
      opened.push({ close: () => bot.socket.destroy() });
      // Fill the victim's store; the message after it is the first refusal.
      let batch = "";
      for (let i = 0; i <= STORED; i++) batch += message(i);
      await bot.write(batch);
      await bot.until(() => bot.refused === 1, 5000, "the store to fill");

      const login = (u: string) =>
        RawClient.login(server.port, u, "secret", { starttls: false, mech: "PLAIN" });
      const [alice, bob] = [await login("alice"), await login("bob")];
      opened.push(alice, bob);
      bob.send("<presence/>");
      const probe = await stallProbe(server.port);
      let probed: { maxWaitMs: number; pings: number } | undefined;
      try {
        const started = performance.now();
        const flood = (async () => {
          for (let i = 0; i < FLOOD; i += 500) {
            let chunk = "";
            for (let k = i; k < i + 500; k++) chunk += message(STORED + 1 + k);
            await bot.write(chunk);
          }
        })();
        // Legitimate traffic in the middle of the flood still arrives in time.
        await bot.until(() => bot.refused > FLOOD / 4, 15_000, "the flood to be under way");
        const sentAt = performance.now();
        alice.send(`<message to='bob@localhost' id='hello' type='chat'><body>hi</body></message>`);
        await bob.waitFor((e) => e.attrs.id === "hello", MAX_STALL_MS, "alice's message");
        const delivery = performance.now() - sentAt;
        await flood;
        await bot.until(() => bot.refused === FLOOD + 1, 20_000, "every refusal");
        const took = performance.now() - started;
        probed = await probe.stop();
        console.log(
          `flood of ${FLOOD}: ${took.toFixed(0)} ms, refused ${bot.refused}, ` +
            `delivery ${delivery.toFixed(0)} ms, probe max wait ${
              probed.maxWaitMs.toFixed(0)
            } ms ` +
            `over ${probed.pings} pings`,
        );
      } finally {
        probed ??= await probe.stop();
      }
      assert.ok(probed.pings > 0, "the probe pinged during the flood");
      assert.ok(
        probed.maxWaitMs < MAX_STALL_MS,
        `the probe waited ${probed.maxWaitMs.toFixed(0)} ms`,
      );
      assert.ok(!bot.closed, "the component is still connected");
    } finally {
      for (const c of opened) c.close();
      await server.stop();
    }
  },
);
