// A real client library (@xmpp/client: STARTTLS, SCRAM-SHA-1, bind) against the server.
import assert from "node:assert/strict";
import { client, xml } from "@xmpp/client";
import { serverTest, startServer } from "../helpers/server.ts";

// The test server's certificate is self-signed; @xmpp/client offers no CA option.
Deno.env.set("NODE_TLS_REJECT_UNAUTHORIZED", "0");

interface XmppElement {
  is(name: string, xmlns?: string): boolean;
  attrs: Record<string, string>;
  getChild(name: string, xmlns?: string): XmppElement | undefined;
  getChildText(name: string): string | null;
  getChildren(name: string): XmppElement[];
}

// deno-lint-ignore no-explicit-any
type XmppClient = any;

function connect(port: number, username: string, resource: string): XmppClient {
  return client({
    service: `xmpp://127.0.0.1:${port}`,
    domain: "localhost",
    username,
    password: "secret",
    resource,
  });
}

function next(xmpp: XmppClient, pred: (el: XmppElement) => boolean): Promise<XmppElement> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("timed out")), 5000);
    const onStanza = (el: XmppElement) => {
      if (!pred(el)) return;
      clearTimeout(timer);
      xmpp.off("stanza", onStanza);
      resolve(el);
    };
    xmpp.on("stanza", onStanza);
  });
}

serverTest(
  "@xmpp/client: STARTTLS + SCRAM login, roster, presence and chat between two clients",
  async () => {
    const t = await startServer({
      listeners: [{ type: "c2s", bind: "127.0.0.1", port: 0 }, {
        type: "c2s_tls",
        bind: "127.0.0.1",
        port: 0,
      }],
    });
    const a = connect(t.port, "alice", "laptop");
    const b = connect(t.port, "bob", "phone");
    try {
      await t.addUser("alice");
      await t.addUser("bob");
      const [ja, jb] = await Promise.all([a.start(), b.start()]);
      assert.equal(ja.toString(), "alice@localhost/laptop");
      assert.equal(jb.toString(), "bob@localhost/phone");
      const roster = await a.iqCaller.get(xml("query", "jabber:iq:roster"));
      assert.equal(roster.getChildren("item").length, 0);
      await b.send(xml("presence"));
      const got = next(b, (el) => el.is("message") && el.attrs.id === "hello");
      await a.send(
        xml(
          "message",
          { to: "bob@localhost", type: "chat", id: "hello" },
          xml("body", {}, "hi Bob"),
        ),
      );
      const msg = await got;
      assert.equal(msg.attrs.from, "alice@localhost/laptop");
      assert.equal(msg.getChildText("body"), "hi Bob");
      // An empty result resolves (an error would reject).
      assert.equal(await a.iqCaller.get(xml("ping", "urn:xmpp:ping"), "localhost"), undefined);
    } finally {
      await Promise.allSettled([a.stop(), b.stop()]);
      await t.stop();
    }
  },
);
