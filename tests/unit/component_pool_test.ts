import assert from "node:assert/strict";
import { type ComponentInstance, ComponentPool } from "../../src/component/pool.ts";
import { Router } from "../../src/router/router.ts";
import { jid } from "../../src/jid/jid.ts";
import { type Element, x } from "../../src/xml/element.ts";

function instance(id: string, alive: () => boolean, got: string[]): ComponentInstance {
  return {
    id,
    remote: "test",
    connectedAt: 0,
    stats: { received: 0, sent: 0 },
    deliver: (s: Element) => alive() && got.push(`${id}:${s.attrs.id}`) > 0,
  };
}

Deno.test("pool: a stanza for an instance already gone is rerouted, then bounced when none is left", () => {
  const router = new Router();
  const bounced: Element[] = [];
  router.addDomain("localhost", { receive: (s) => bounced.push(s) });
  const pool = new ComponentPool(
    { domain: "gw.localhost", secret: "s", balance: "bare_source" },
    "localhost",
    router,
  );
  const got: string[] = [];
  let aAlive = true;
  let bAlive = true;
  pool.add(instance("a", () => aAlive, got));
  pool.add(instance("b", () => bAlive, got));
  const from = jid("user@localhost/r");
  const to = jid("gw.localhost");
  const msg = (id: string) => x("message", { from: from.full, to: to.full, id, type: "chat" });
  pool.receive(msg("1"), from, to);
  const owner = got[0].split(":")[0];
  // The owner's connection is gone but not yet noticed: deliver() refuses, the other one takes it.
  if (owner === "a") aAlive = false;
  else bAlive = false;
  pool.receive(msg("2"), from, to);
  assert.equal(got[1], `${owner === "a" ? "b" : "a"}:2`);
  assert.equal(pool.instances.size, 1, "the dead instance was removed");
  aAlive = bAlive = false;
  pool.receive(msg("3"), from, to);
  assert.equal(pool.instances.size, 0);
  assert.equal(bounced.length, 1);
  assert.equal(bounced[0].attrs.type, "error");
  assert.ok(bounced[0].child("error")!.child("service-unavailable"));
});
