// The links of relayed proxy65 streams between nodes (src/cluster/proxy65_link.ts): the
// accepting node is authenticated by its cluster certificate, the dialling one by a one-time
// ticket; anything else is closed without an answer.
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { testPki } from "../helpers/cluster_pki.ts";
import {
  dialStream,
  type LinkEnd,
  listenForStreams,
  relaying,
} from "../../src/cluster/proxy65_link.ts";

Deno.test("proxy65 link: one ticket, once; the listener's certificate must name the node", async () => {
  const pki = await testPki(["n1", "n2"]);
  const [n1, n2] = [await pki.creds("n1"), await pki.creds("n2")];
  const accepted: LinkEnd[] = [];
  const relay = listenForStreams(n1, "127.0.0.1", 0, async (expected, end) => {
    assert.deepEqual(expected, { peer: "n2", hash: "h", owner: "o@x" });
    accepted.push(end);
    await relaying(end);
    return true;
  });
  const address = { host: "127.0.0.1", port: relay.port };
  try {
    const ticket = relay.tickets.issue({ peer: "n2", hash: "h", owner: "o@x" });
    // Not the node the dialler meant: it never sends the ticket.
    await assert.rejects(dialStream(n2, "n2", address, ticket), /not valid for name/);
    const end = await dialStream(n2, "n1", address, ticket);
    await end.write(new TextEncoder().encode("ping"));
    const got = new Uint8Array(4);
    assert.ok(await accepted[0].readFull(got));
    assert.equal(new TextDecoder().decode(got), "ping");
    end.close();
    // The same ticket again, a made-up one, and one with a right id but a wrong secret.
    const forged = Buffer.from(
      relay.tickets.issue({ peer: "n2", hash: "h", owner: "o@x" }),
      "base64",
    );
    forged[47] ^= 1;
    const made = Buffer.from(crypto.getRandomValues(new Uint8Array(48))).toString("base64");
    for (const bad of [ticket, made, forged.toString("base64")]) {
      await assert.rejects(dialStream(n2, "n1", address, bad), /refused|closed|reset|broken/i);
    }
    assert.equal(accepted.length, 1, "only the valid ticket reached the relay");
    // A ticket with a forged secret is gone too: its id cannot be tried again.
    forged[47] ^= 1;
    await assert.rejects(dialStream(n2, "n1", address, forged.toString("base64")));
  } finally {
    for (const end of accepted) end.close();
    relay.close();
    await pki.remove();
  }
});
