import assert from "node:assert/strict";
import { LocalPools } from "../../src/component/local_pools.ts";
import {
  type ComponentInstance,
  ComponentPool,
  originalId,
  requestId,
} from "../../src/component/pool.ts";
import { Router } from "../../src/router/router.ts";
import { jid } from "../../src/jid/jid.ts";
import { type Element, x } from "../../src/xml/element.ts";

function instance(id: string, alive: () => boolean, got: string[]): ComponentInstance {
  return {
    instanceId: id,
    node: "local",
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
    { domain: "gw.localhost", secret: "s", balance: "bare_source", reconnect_grace_ms: 0 },
    "localhost",
    router,
    new LocalPools(),
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

function pool(reconnectGraceMs = 0, bounced: Element[] = []): ComponentPool {
  const router = new Router();
  router.addDomain("localhost", { receive: (s) => bounced.push(s) });
  return new ComponentPool(
    {
      domain: "gw.localhost",
      secret: "s",
      balance: "bare_source",
      reconnect_grace_ms: reconnectGraceMs,
    },
    "localhost",
    router,
    new LocalPools(),
    "n1",
  );
}

Deno.test("pool: an answer to an instance's request goes to that instance only, or nowhere", () => {
  const p = pool();
  const got: string[] = [];
  for (const id of ["n1/a", "n1/b", "n2/c"]) {
    p.add({ ...instance(id, () => true, got), node: id.slice(0, 2) });
  }
  const user = jid("user@localhost/r");
  const to = jid("gw.localhost");
  // Whatever instance the user's key picks, the answer goes to the one that asked.
  for (const asker of ["n1/a", "n1/b", "n2/c"]) {
    const id = requestId(asker, "q1");
    const result = x("iq", { type: "result", from: user.full, to: to.full, id });
    p.receive(result, user, to);
    assert.equal(got.at(-1), `${asker}:${id}`);
    assert.equal(originalId(result, asker), "q1", "the asker gets its own id back");
    assert.equal(originalId(result, "n1/zz"), id, "nobody else's id is touched");
  }
  // The asker is gone: the answer is dropped, not given to another instance (nor bounced).
  const orphan = x("iq", {
    type: "error",
    from: user.full,
    to: to.full,
    id: requestId("n1/x", "q"),
  });
  const before = got.length;
  p.receive(orphan, user, to);
  assert.equal(got.length, before);
});

Deno.test("pool: within the reconnect grace a returning instance takes back its id, so its keys", () => {
  const p = pool(60_000);
  const a = p.claimId("10.0.0.1:4000", "c1");
  const b = p.claimId("10.0.0.2:4000", "c2");
  assert.equal(a, "n1/c1");
  const got: string[] = [];
  const ia = instance(a, () => true, got);
  const ib = instance(b, () => true, got);
  p.add({ ...ia, node: "n1", remote: "10.0.0.1:4000" });
  p.add({ ...ib, node: "n1", remote: "10.0.0.2:4000" });
  p.remove(p.instances.get(a)!);
  p.remove(p.instances.get(b)!);
  // Back in another order, from other ports: each address gets its own id again.
  assert.equal(p.claimId("10.0.0.2:5000", "c3"), b);
  assert.equal(p.claimId("10.0.0.1:5000", "c4"), a);
  assert.equal(p.claimId("10.0.0.1:5001", "c5"), "n1/c5", "no vacancy left: a fresh id");
  const none = pool(0);
  const c = none.claimId("10.0.0.1:4000", "c1");
  none.add({ ...instance(c, () => true, got), node: "n1", remote: "10.0.0.1:4000" });
  none.remove(none.instances.get(c)!);
  assert.equal(none.claimId("10.0.0.1:4001", "c2"), "n1/c2", "no grace: a fresh id");
});
