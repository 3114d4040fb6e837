// Multi-User Chat (XEP-0045): groupchat, subject, private messages, history, invitations, nick
// changes, self-ping, and flood isolation.
import assert from "node:assert/strict";
import { type TestServer, withServer } from "../helpers/server.ts";
import { NS } from "../../src/xml/ns.ts";
import type { Element } from "../../src/xml/element.ts";
import type { RawClient } from "../helpers/raw_client.ts";
import {
  accounts,
  createRoom,
  errorCondition,
  field,
  isMessage,
  isPresence,
  item,
  join,
  login,
  MUC,
  mucServer,
  ownerSubmit,
  statusCodes,
} from "../helpers/muc.ts";

const body = (text: string) => (e: Element) => e.name === "message" && e.childText("body") === text;
const groupchat = (room: string, text: string, id = "") =>
  `<message to='${room}@${MUC}' type='groupchat'${
    id ? ` id='${id}'` : ""
  }><body>${text}</body></message>`;

withServer("MUC: groupchat, subject rights, private messages", mucServer(), async (t) => {
  const [ann, bob, cat] = await accounts(t, "ann", "bob", "cat");
  await createRoom(ann, "r", "Ann");
  await join(bob, "r", "Bob");

  // Groupchat reaches every occupant, sender included, from the sender's room JID, id kept.
  bob.send(groupchat("r", "hello all", "m1"));
  for (const c of [ann, bob]) {
    const m = await c.waitFor(body("hello all"));
    assert.equal(m.attrs.from, `r@${MUC}/Bob`);
    assert.equal(m.attrs.type, "groupchat");
    assert.equal(m.attrs.id, "m1");
  }
  // Non-occupants cannot post.
  cat.send(groupchat("r", "intruder"));
  const outsider = await cat.waitFor((e) => e.name === "message" && e.attrs.type === "error");
  assert.equal(errorCondition(outsider), "not-acceptable");

  // Subject: participants may not change it by default; moderators may; joiners receive it.
  bob.send(`<message to='r@${MUC}' type='groupchat'><subject>mine</subject></message>`);
  const denied = await bob.waitFor((e) => e.name === "message" && e.attrs.type === "error");
  assert.equal(errorCondition(denied), "forbidden");
  ann.send(`<message to='r@${MUC}' type='groupchat'><subject>Plans</subject></message>`);
  const subj = await bob.waitFor((e) => e.childText("subject") === "Plans");
  assert.equal(subj.attrs.from, `r@${MUC}/Ann`);
  await join(cat, "r", "Cat");
  const catSubject = await cat.waitFor((e) => e.name === "message" && !!e.child("subject"));
  assert.equal(catSubject.childText("subject"), "Plans");

  // Private messages go through the room nick and carry the muc#user marker.
  bob.send(`<message to='r@${MUC}/Cat' type='chat'><body>hi cat</body></message>`);
  const pm = await cat.waitFor(body("hi cat"));
  assert.equal(pm.attrs.from, `r@${MUC}/Bob`);
  assert.ok(pm.child("x", NS.mucUser));
  bob.send(`<message to='r@${MUC}/Nobody' type='chat'><body>?</body></message>`);
  const nobody = await bob.waitFor((e) => e.name === "message" && e.attrs.type === "error");
  assert.equal(errorCondition(nobody), "item-not-found");
  bob.send(`<message to='r@${MUC}/Cat' type='groupchat'><body>?</body></message>`);
  const wrongType = await bob.waitFor((e) => e.name === "message" && e.attrs.type === "error");
  assert.equal(errorCondition(wrongType), "bad-request");
  await ownerSubmit(ann, "r", field("muc#roomconfig_allowpm", "none"));
  bob.send(`<message to='r@${MUC}/Cat' type='chat'><body>blocked</body></message>`);
  const noPm = await bob.waitFor((e) => e.name === "message" && e.attrs.type === "error");
  assert.equal(errorCondition(noPm), "forbidden");
  // The configuration change was announced with 104.
  const changed = await cat.waitFor((e) => e.name === "message" && statusCodes(e).includes(104));
  assert.equal(changed.attrs.from, `r@${MUC}`);
  // Becoming non-anonymous adds 172; a moderated room makes newcomers without affiliation visitors.
  await ownerSubmit(
    ann,
    "r",
    field("muc#roomconfig_whois", "anyone") + field("muc#roomconfig_moderatedroom", "1"),
  );
  const nonAnon = await cat.waitFor((e) => e.name === "message" && statusCodes(e).includes(172));
  assert.deepEqual(statusCodes(nonAnon).sort(), [104, 172]);
  await t.addUser("dan");
  const dan = await login(t.port, "dan");
  const visitor = await join(dan, "r", "Dan");
  assert.equal(item(visitor).role, "visitor");
  assert.ok(statusCodes(visitor).includes(100));
  dan.send(groupchat("r", "may I?"));
  const noVoice = await dan.waitFor((e) => e.name === "message" && e.attrs.type === "error");
  assert.equal(errorCondition(noVoice), "forbidden");
});

withServer(
  "MUC: history on entry honours maxstanzas, maxchars, seconds, since",
  mucServer(),
  async (t) => {
    for (const u of ["ann", "bob"]) await t.addUser(u);
    const ann = await login(t.port, "ann");
    await createRoom(ann, "h", "Ann");
    for (let i = 1; i <= 4; i++) {
      ann.send(groupchat("h", `m${i}`));
      await ann.waitFor(body(`m${i}`));
    }
    const entry = async (history: string) => {
      const bob = await login(t.port, "bob");
      await join(bob, "h", "Bob", history);
      await bob.waitFor((e) => e.name === "message" && !!e.child("subject"));
      const got = bob.received.filter((e) => e.name === "message" && e.child("body"));
      bob.close();
      await ann.waitFor(isPresence(`h@${MUC}/Bob`, "unavailable"));
      return got;
    };
    const all = await entry("");
    assert.deepEqual(all.map((m) => m.childText("body")), ["m1", "m2", "m3", "m4"]);
    const delay = all[0].child("delay", NS.delay)!;
    assert.equal(delay.attrs.from, `h@${MUC}`);
    assert.ok(!Number.isNaN(Date.parse(delay.attrs.stamp!)));
    assert.equal(all[0].attrs.from, `h@${MUC}/Ann`);
    assert.deepEqual(
      (await entry("<history maxstanzas='2'/>")).map((m) => m.childText("body")),
      ["m3", "m4"],
    );
    assert.deepEqual(await entry("<history maxchars='0'/>"), []);
    assert.deepEqual(await entry("<history seconds='0'/>").then((m) => m.length <= 1), true);
    assert.deepEqual(await entry("<history since='2999-01-01T00:00:00Z'/>"), []);
    assert.equal((await entry("<history since='2000-01-01T00:00:00Z'/>")).length, 4);
    // The room keeps only its configured length.
    await ownerSubmit(ann, "h", field("muc#maxhistoryfetch", "1"));
    assert.deepEqual((await entry("")).map((m) => m.childText("body")), ["m4"]);
  },
);

withServer("MUC: invitations, declines, nick change, presence updates", mucServer(), async (t) => {
  const [ann, bob, cat] = await accounts(t, "ann", "bob", "cat");
  for (const c of [ann, bob]) c.send("<presence/>"); // available: invitations go to the bare JID
  await join(ann, "club", "Ann");
  await ownerSubmit(
    ann,
    "club",
    field("muc#roomconfig_membersonly", "1") + field("muc#roomconfig_passwordprotectedroom", "1") +
      field("muc#roomconfig_roomsecret", "pw"),
  );
  ann.send(
    `<message to='club@${MUC}'><x xmlns='${NS.mucUser}'><invite to='bob@localhost'><reason>join us</reason></invite></x></message>`,
  );
  const inv = await bob.waitFor((e) => e.name === "message" && !!e.child("x", NS.mucUser));
  assert.equal(inv.attrs.from, `club@${MUC}`);
  const x = inv.child("x", NS.mucUser)!;
  assert.equal(x.child("invite")!.attrs.from, ann.jid);
  assert.equal(x.child("invite")!.childText("reason"), "join us");
  assert.equal(x.childText("password"), "pw");
  // Invited into a members-only room: now a member, so the entry works.
  const entered = await join(bob, "club", "Bob", "<password>pw</password>");
  assert.equal(item(entered).affiliation, "member");
  // Cat declines; Ann gets the decline from the room.
  cat.send(
    `<message to='club@${MUC}'><x xmlns='${NS.mucUser}'><decline to='${ann.jid}'><reason>busy</reason></decline></x></message>`,
  );
  const dec = await ann.waitFor((e) => !!e.child("x", NS.mucUser)?.child("decline"));
  assert.equal(dec.child("x", NS.mucUser)!.child("decline")!.attrs.from, "cat@localhost");
  // Participants may not invite unless allowed.
  bob.send(
    `<message to='club@${MUC}'><x xmlns='${NS.mucUser}'><invite to='cat@localhost'/></x></message>`,
  );
  const refused = await bob.waitFor((e) => e.name === "message" && e.attrs.type === "error");
  assert.equal(errorCondition(refused), "forbidden");

  // Nick change: 303 with the new nick from the old one, then presence from the new nick.
  bob.send(`<presence to='club@${MUC}/Robert'/>`);
  const old = await ann.waitFor(isPresence(`club@${MUC}/Bob`, "unavailable"));
  assert.ok(statusCodes(old).includes(303));
  assert.equal(item(old).nick, "Robert");
  await ann.waitFor(isPresence(`club@${MUC}/Robert`));
  const selfOld = await bob.waitFor(isPresence(`club@${MUC}/Bob`, "unavailable"));
  assert.deepEqual(statusCodes(selfOld).sort(), [110, 303]);
  bob.send(`<presence to='club@${MUC}/Ann'/>`);
  const taken = await bob.waitFor((e) => e.name === "presence" && e.attrs.type === "error");
  assert.equal(errorCondition(taken), "conflict");
  // Presence updates are broadcast with show/status.
  bob.send(`<presence to='club@${MUC}/Robert'><show>away</show><status>lunch</status></presence>`);
  const upd = await ann.waitFor((e) => e.attrs.from === `club@${MUC}/Robert` && !!e.child("show"));
  assert.equal(upd.childText("status"), "lunch");
});

withServer("MUC: self-ping (XEP-0410) and iq between occupants", mucServer(), async (t) => {
  const [ann, bob] = await accounts(t, "ann", "bob");
  await createRoom(ann, "p", "Ann");
  const joined = await ann.iq("get", `<ping xmlns='${NS.ping}'/>`, `p@${MUC}/Ann`);
  assert.equal(joined.attrs.type, "result");
  assert.equal(joined.attrs.from, `p@${MUC}/Ann`);
  const notJoined = await bob.iq("get", `<ping xmlns='${NS.ping}'/>`, `p@${MUC}/Ann`);
  assert.equal(errorCondition(notJoined), "not-acceptable");
  // A vCard request to an occupant is forwarded under room JIDs and the answer comes back.
  await join(bob, "p", "Bob");
  const asked = bob.iq("get", `<vCard xmlns='vcard-temp'/>`, `p@${MUC}/Ann`);
  const fwd = await ann.waitFor((e) => e.name === "iq" && !!e.child("vCard"));
  assert.equal(fwd.attrs.from, `p@${MUC}/Bob`);
  ann.send(
    `<iq type='result' to='p@${MUC}/Bob' id='${fwd.attrs.id}'><vCard xmlns='vcard-temp'><FN>Ann</FN></vCard></iq>`,
  );
  const answer = await asked;
  assert.equal(answer.attrs.type, "result");
  assert.equal(answer.attrs.from, `p@${MUC}/Ann`);
  assert.equal(answer.child("vCard")!.childText("FN"), "Ann");
});

/** Ann and Bob in room "busy", Cat alone in "quiet", and `n` groupchat messages for "busy". */
async function floodSetup(t: TestServer, n: number) {
  const [ann, bob, cat] = await accounts(t, "ann", "bob", "cat");
  await createRoom(ann, "busy", "Ann");
  await join(bob, "busy", "Bob");
  await createRoom(cat, "quiet", "Cat");
  let flood = "";
  for (let i = 0; i < n; i++) flood += groupchat("busy", `f${i}`);
  return { ann, bob, cat, flood };
}

withServer(
  "MUC: a flood into one room is throttled per occupant and starves no one",
  mucServer({ message_rate: 5, message_burst: 10 }),
  async (t) => {
    const { ann, bob, cat, flood } = await floodSetup(t, 200);
    ann.send(flood);
    const throttled = await ann.waitFor((e) => e.name === "message" && e.attrs.type === "error");
    assert.equal(errorCondition(throttled), "resource-constraint");
    assert.equal(throttled.child("error")!.attrs.type, "wait");
    // Another occupant of the same room and another room keep working.
    bob.send(groupchat("busy", "still here"));
    await ann.waitFor(body("still here"));
    cat.send(groupchat("quiet", "calm"));
    await cat.waitFor(body("calm"));
    const delivered = bob.received.filter((e) => e.childText("body")?.startsWith("f")).length;
    assert.ok(delivered <= 12, `the flooder got ${delivered} messages through`);
  },
);

withServer(
  "MUC: many senders together are held to the room's delivery budget; other rooms are not",
  mucServer({ message_rate: 0, room_delivery_rate: 40 }),
  async (t) => {
    const { ann, bob, cat, flood } = await floodSetup(t, 100);
    ann.send(flood);
    bob.send(flood);
    for (const c of [ann, bob]) {
      const refused = await c.waitFor((e) => e.name === "message" && e.attrs.type === "error");
      assert.equal(errorCondition(refused), "resource-constraint");
    }
    cat.send(groupchat("quiet", "calm"));
    await cat.waitFor(body("calm"));
    // Each message costs 2 deliveries: 18 fit in what the burst keeps after the two entries
    // (1 + 3), a few more as the budget refills.
    const delivered = ann.received.filter((e) => e.childText("body")?.startsWith("f")).length;
    assert.ok(delivered >= 18 && delivered < 60, `${delivered} messages got through`);
  },
);

withServer(
  "MUC: invitations, declines, private messages, nick changes and iqs are held to the budgets",
  mucServer({ message_rate: 1, message_burst: 3 }),
  async (t) => {
    const [ann, bob, cat] = await accounts(t, "ann", "bob", "cat");
    cat.send("<presence/>"); // available: invitations go to the bare JID
    await cat.iq("get", `<ping xmlns='${NS.ping}'/>`);
    await createRoom(ann, "r", "Ann");
    await join(bob, "r", "Bob");
    const refused = async (c: RawClient, name: string) => {
      const e = await c.waitFor((e) => e.name === name && e.attrs.type === "error");
      assert.equal(errorCondition(e), "resource-constraint");
      assert.equal(e.child("error")!.attrs.type, "wait");
      c.received.length = 0;
    };
    const flood = (c: RawClient, stanza: string) => c.send(stanza.repeat(10));
    const invitation = (e: Element) => !!e.child("x", NS.mucUser)?.child("invite");

    flood(
      ann,
      `<message to='r@${MUC}'><x xmlns='${NS.mucUser}'><invite to='cat@localhost'/></x></message>`,
    );
    await refused(ann, "message");
    for (let i = 0; i < 3; i++) await cat.waitFor(invitation); // the burst got through
    // Declines from outside the room share one budget.
    flood(
      cat,
      `<message to='r@${MUC}'><x xmlns='${NS.mucUser}'><decline to='${ann.jid}'/></x></message>`,
    );
    await refused(cat, "message");
    flood(bob, `<message to='r@${MUC}/Ann' type='chat'><body>pm</body></message>`);
    await refused(bob, "message");
    flood(bob, `<iq to='r@${MUC}/Ann' type='get' id='v'><query xmlns='jabber:iq:version'/></iq>`);
    await refused(bob, "iq");
    flood(bob, `<presence to='r@${MUC}/Bobby'/><presence to='r@${MUC}/Bob'/>`);
    await refused(bob, "presence");
  },
);

withServer(
  "MUC: leaving and entering again and again is held to the room's budget",
  mucServer({ room_delivery_rate: 10 }),
  async (t) => {
    const [ann, bob] = await accounts(t, "ann", "bob");
    await createRoom(ann, "r", "Ann");
    await join(bob, "r", "Bob");
    const cycle = `<presence to='r@${MUC}/Bob' type='unavailable'/><presence to='r@${MUC}/Bob'/>`;
    bob.send(cycle.repeat(10));
    const refused = await bob.waitFor((e) => e.name === "presence" && e.attrs.type === "error");
    assert.equal(errorCondition(refused), "resource-constraint");
  },
);

withServer(
  "MUC: presence updates over budget are held, and the latest goes out",
  mucServer({ message_rate: 1, message_burst: 2 }),
  async (t) => {
    const [ann, bob] = await accounts(t, "ann", "bob");
    await createRoom(ann, "r", "Ann");
    await join(bob, "r", "Bob");
    let updates = "";
    for (let i = 0; i < 20; i++) {
      updates += `<presence to='r@${MUC}/Bob'><status>s${i}</status></presence>`;
    }
    bob.send(updates);
    const fromBob = (e: Element) =>
      isPresence(`r@${MUC}/Bob`)(e) && e.child("status") !== undefined;
    await ann.waitFor((e) => fromBob(e) && e.childText("status") === "s19", 5000);
    const seen = ann.received.filter(fromBob).length;
    assert.ok(seen <= 4, `${seen} of 20 updates were broadcast`);
    assert.ok(!bob.received.some((e) => e.name === "presence" && e.attrs.type === "error"));
  },
);

withServer("MUC: non-occupant errors and unknown rooms", mucServer(), async (t) => {
  const [ann] = await accounts(t, "ann");
  const msg = await (async () => {
    ann.send(`<message to='nowhere@${MUC}' type='groupchat'><body>x</body></message>`);
    return await ann.waitFor((e) => e.name === "message" && e.attrs.type === "error");
  })();
  assert.equal(errorCondition(msg), "item-not-found");
  const info = await ann.iq("get", `<query xmlns='${NS.discoInfo}'/>`, `nowhere@${MUC}`);
  assert.equal(errorCondition(info), "item-not-found");
  const unknown = await ann.iq("get", `<query xmlns='urn:example:unknown'/>`, MUC);
  assert.equal(errorCondition(unknown), "service-unavailable");
  await createRoom(ann, "r", "Ann");
  const reg = await ann.iq("get", `<query xmlns='jabber:iq:register'/>`, `r@${MUC}`);
  assert.equal(errorCondition(reg), "service-unavailable");
  assert.equal(isMessage(`r@${MUC}`)(reg), false);
});
