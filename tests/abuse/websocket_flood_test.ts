// Abuse: 1,000 WebSockets from one address that upgrade and then never send <open/>. Each is a
// client session waiting for its stream: the handshake timeout closes every one of them, and
// meanwhile a logged-in user never waits and a WebSocket login goes through.
import assert from "node:assert/strict";
import { client } from "@xmpp/client";
import { abuseServer, allClosed, assertUnstalled, stallProbe } from "../helpers/abuse.ts";
import { serverTest } from "../helpers/server.ts";

const CONNECTIONS = 1000;
const HANDSHAKE_S = 2;
/** Time the server may take beyond the deadline to close a connection (its sweep, a busy loop). */
const SLACK_MS = 2000;

interface Silent {
  ws: WebSocket;
  /** Milliseconds from opening to the server closing it. */
  lifetime?: number;
}

function silent(url: string): Promise<Silent> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, ["xmpp"]);
    const s: Silent = { ws };
    let openedAt = performance.now();
    ws.onopen = () => {
      openedAt = performance.now();
      resolve(s);
    };
    ws.onclose = () => {
      s.lifetime = performance.now() - openedAt;
      resolve(s);
    };
  });
}

serverTest(
  "abuse: silent WebSockets are closed by the handshake timeout, others unaffected",
  async () => {
    const server = await abuseServer({
      listeners: [
        { type: "c2s", bind: "127.0.0.1", port: 0, starttls: "optional", plain_without_tls: true },
        { type: "c2s_tls", bind: "127.0.0.1", port: 0 },
        { type: "http", bind: "127.0.0.1", port: 0 },
      ],
      limits: { connections_per_ip: CONNECTIONS + 10 },
      timeouts: { handshake: HANDSHAKE_S },
    }, ["probe", "user"]);
    const url = `ws://127.0.0.1:${server.ports[2]}/xmpp-websocket`;
    const conns: Silent[] = [];
    try {
      const probe = await stallProbe(server.port);
      let stall: { maxWaitMs: number; pings: number } | undefined;
      try {
        for (let i = 0; i < CONNECTIONS; i += 100) {
          conns.push(...await Promise.all(Array.from({ length: 100 }, () => silent(url))));
        }
        // A real WebSocket client logs in while the silent ones are held.
        const user = client({
          service: url,
          domain: "localhost",
          username: "user",
          password: "secret",
        });
        try {
          const jid = await user.start();
          assert.equal(jid.bare().toString(), "user@localhost");
        } finally {
          await user.stop().catch(() => {});
        }
        await allClosed(conns, (c) => c.lifetime === undefined, HANDSHAKE_S * 1000 + SLACK_MS);
      } finally {
        stall = await probe.stop();
      }
      const open = conns.filter((c) => c.lifetime === undefined).length;
      assert.equal(open, 0, `${open} silent WebSockets outlived the handshake timeout`);
      assertUnstalled(stall!);
    } finally {
      for (const c of conns) c.ws.close();
      await server.stop();
    }
  },
);
