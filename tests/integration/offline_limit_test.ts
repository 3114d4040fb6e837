// Offline storage at its limit (XEP-0160): the sender of a message the store cannot take gets
// service-unavailable; an account found full is refused without asking the store again, yet
// stores again as soon as its messages have been taken.
import assert from "node:assert/strict";
import { RawClient } from "../helpers/raw_client.ts";
import { withServer } from "../helpers/server.ts";
import { until } from "../helpers/until.ts";

const LOGIN = { starttls: false, mech: "PLAIN" } as const;

withServer(
  "a full offline store refuses with service-unavailable and has room again once taken",
  { limits: { max_offline_messages: 2 } },
  async (t) => {
    await t.addUser("ida");
    await t.addUser("joe");
    const ida = await RawClient.login(t.port, "ida", "secret", LOGIN);
    const send = (id: string) =>
      ida.send(`<message to='joe@localhost' type='chat' id='${id}'><body>${id}</body></message>`);
    const refused = async (id: string) => {
      const err = await ida.waitFor((e) => e.attrs.id === id, 5000, `the refusal of ${id}`);
      assert.equal(err.attrs.type, "error");
      assert.ok(err.child("error")!.child("service-unavailable"));
    };
    for (const id of ["m1", "m2", "m3", "m4"]) send(id);
    await refused("m3");
    await refused("m4");
    const joe = await RawClient.login(t.port, "joe", "secret", LOGIN);
    joe.send("<presence/>");
    for (const id of ["m1", "m2"]) await joe.waitFor((e) => e.attrs.id === id);
    joe.close();
    await until(() => [...t.server.sessions.resources("joe@localhost")].length === 0, "logout");
    // Taken: the store has room at once, not only when the memory of the refusal expires.
    send("m5");
    send("m6");
    send("m7");
    await refused("m7");
    const again = await RawClient.login(t.port, "joe", "secret", LOGIN);
    again.send("<presence/>");
    for (const id of ["m5", "m6"]) await again.waitFor((e) => e.attrs.id === id);
    // m5 and m6 were refused by nobody (their errors would have come before m7's).
    assert.ok(!ida.received.some((e) => e.attrs.type === "error"));
    ida.close();
    again.close();
  },
);
