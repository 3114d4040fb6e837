// XEP-0198 stream management with real clients on one node: slixmpp's xep_0198 plugin
// (tests/interop/sm_client.py) and @xmpp/client over TCP and over WebSocket, each connected
// through a FaultProxy while 500 messages flow at 100/s, one way or the other: after 150 the proxy
// blackholes the connection (stanzas of both sides are lost in flight), 20 later it cuts it; the
// client reconnects through the proxy, resumes, and every message arrives exactly once and in
// order, with no `unavailable` presence of its full JID shown to its contact
// (tests/helpers/sm_load.ts). About 5 s each.
import { FaultProxy } from "../helpers/fault_proxy.ts";
import { RawClient } from "../helpers/raw_client.ts";
import { serverTest, SLIXMPP_LISTENERS, startServer, type TestServer } from "../helpers/server.ts";
import {
  DOMAIN,
  endpoint,
  runSmScenario,
  type SmClientKind,
  type SmDeployment,
  type SmDirection,
} from "../helpers/sm_load.ts";

const SM_SERVER = {
  listeners: [...SLIXMPP_LISTENERS, { type: "http", bind: "127.0.0.1", port: 0 }],
  stream_management: { resume_timeout: "300s", max_resume_timeout: "3600s", max_unacked: 5000 },
};

/** One node; the client goes through a proxy in front of the c2s (or http) listener. */
async function oneNode(t: TestServer, kind: SmClientKind): Promise<[SmDeployment, FaultProxy]> {
  const port = kind === "xmpp.js-websocket" ? t.httpPort : t.port;
  const proxy = await FaultProxy.start({ host: "127.0.0.1", port });
  const at = endpoint(proxy.host, proxy.port);
  return [{
    first: at,
    reconnect: at,
    stall: () => {
      proxy.set("blackhole"); // bytes stop moving both ways; the sockets stay open
      return Promise.resolve();
    },
    fault: () => {
      proxy.set("cut"); // closes the client's connection(s) through the proxy, not the server
      proxy.set("pass"); // and lets the reconnection through
      return Promise.resolve();
    },
    addUser: (user) => t.addUser(user),
    async befriend(a, b) {
      for (const [u, c] of [[a, b], [b, a]]) {
        await t.server.store.updateRosterItem(u, DOMAIN, `${c}@${DOMAIN}`, () => ({
          jid: `${c}@${DOMAIN}`,
          subscription: "both",
          ask: false,
          groups: [],
        }));
      }
    },
    peerLogin: (user, resource) =>
      RawClient.login(t.port, user, "secret", { starttls: false, resource }),
  }, proxy];
}

function smTest(name: string, kind: SmClientKind, direction: SmDirection): void {
  serverTest(name, async () => {
    const t = await startServer(SM_SERVER);
    const [deployment, proxy] = await oneNode(t, kind);
    try {
      const r = await runSmScenario(deployment, kind, direction);
      console.log(
        `  ${kind} ${direction}: ${r.ms} ms for 500 messages, resumed ${r.resumptions}× ` +
          `${r.faultToResumedMs} ms after the cut, ${r.delayed} with <delay/>, ` +
          `enabled ${JSON.stringify(r.enabled)}`,
      );
    } finally {
      await proxy.close();
      await t.stop();
    }
  });
}

smTest(
  "stream management: slixmpp gets 500 messages at 100/s across a cut, once each and in order; its contact sees no unavailable",
  "slixmpp",
  "to-client",
);

smTest(
  "stream management: slixmpp sends 500 messages at 100/s across a cut; its contact gets each once, in order",
  "slixmpp",
  "from-client",
);

smTest(
  "stream management: @xmpp/client over TCP gets 500 messages at 100/s across a cut, once each and in order",
  "xmpp.js",
  "to-client",
);

smTest(
  "stream management: @xmpp/client over TCP sends 500 messages at 100/s across a cut; its contact gets each once, in order",
  "xmpp.js",
  "from-client",
);

smTest(
  "stream management: @xmpp/client over WebSocket gets 500 messages at 100/s across a cut, once each and in order",
  "xmpp.js-websocket",
  "to-client",
);

smTest(
  "stream management: @xmpp/client over WebSocket sends 500 messages at 100/s across a cut; its contact gets each once, in order",
  "xmpp.js-websocket",
  "from-client",
);
