// Multi-User Chat (XEP-0045): roles and affiliations through muc#admin, destruction, persistence
// across a restart, and the shutdown notice.
import assert from "node:assert/strict";
import { serverTest, startServer, withServer } from "../helpers/server.ts";
import { NS } from "../../src/xml/ns.ts";
import type { RawClient } from "../helpers/raw_client.ts";
import { parley } from "../helpers/process.ts";
import {
  accounts,
  createRoom,
  errorCondition,
  field,
  isPresence,
  item,
  join,
  login,
  MUC,
  mucServer,
  ownerSubmit,
  statusCodes,
} from "../helpers/muc.ts";

const admin = (c: RawClient, room: string, items: string, type: "get" | "set" = "set") =>
  c.iq(type, `<query xmlns='${NS.mucAdmin}'>${items}</query>`, `${room}@${MUC}`);

withServer("MUC: kick, voice, moderator rights and their limits", mucServer(), async (t) => {
  const [ann, bob, cat] = await accounts(t, "ann", "bob", "cat");
  await createRoom(ann, "r", "Ann");
  await join(bob, "r", "Bob");
  await join(cat, "r", "Cat");
  // A participant may not kick.
  const notMod = await admin(bob, "r", "<item nick='Cat' role='none'/>");
  assert.equal(errorCondition(notMod), "forbidden");
  // Revoke voice: Bob becomes a visitor and cannot post.
  const devoice = await admin(ann, "r", "<item nick='Bob' role='visitor'/>");
  assert.equal(devoice.attrs.type, "result");
  const seen = await cat.waitFor((e) =>
    e.attrs.from === `r@${MUC}/Bob` && item(e).role === "visitor"
  );
  assert.equal(seen.attrs.type, undefined);
  bob.send(`<message to='r@${MUC}' type='groupchat'><body>x</body></message>`);
  const mute = await bob.waitFor((e) => e.name === "message" && e.attrs.type === "error");
  assert.equal(errorCondition(mute), "forbidden");
  await admin(ann, "r", "<item nick='Bob' role='participant'/>");
  await cat.waitFor((e) => e.attrs.from === `r@${MUC}/Bob` && item(e).role === "participant");
  // Role list for moderators.
  const parts = await admin(ann, "r", "<item role='participant'/>", "get");
  assert.deepEqual(
    parts.child("query")!.elements("item").map((i) => i.attrs.nick).sort(),
    ["Bob", "Cat"],
  );
  // Grant moderator (owner) — the new moderator still cannot kick the owner.
  await admin(ann, "r", "<item nick='Bob' role='moderator'/>");
  const noKickOwner = await admin(bob, "r", "<item nick='Ann' role='none'/>");
  assert.equal(errorCondition(noKickOwner), "not-allowed");
  const noSuch = await admin(bob, "r", "<item nick='Zed' role='none'/>");
  assert.equal(errorCondition(noSuch), "item-not-found");
  // Kick with 307, actor and reason; others see it too.
  const kick = await admin(
    bob,
    "r",
    "<item nick='Cat' role='none'><reason>off topic</reason></item>",
  );
  assert.equal(kick.attrs.type, "result");
  const self = await cat.waitFor(isPresence(`r@${MUC}/Cat`, "unavailable"));
  assert.deepEqual(statusCodes(self).sort(), [110, 307]);
  const x = self.child("x", NS.mucUser)!.child("item")!;
  assert.equal(x.child("actor")!.attrs.nick, "Bob");
  assert.equal(x.childText("reason"), "off topic");
  const other = await ann.waitFor(isPresence(`r@${MUC}/Cat`, "unavailable"));
  assert.deepEqual(statusCodes(other), [307]);
  // The kicked user may come back (a kick is not a ban).
  const back = await join(cat, "r", "Cat");
  assert.equal(back.attrs.type, undefined);
});

withServer(
  "MUC: affiliation lists, 321 and 322 removals, the last owner stays",
  mucServer(),
  async (t) => {
    const [ann, bob, cat, dan] = await accounts(t, "ann", "bob", "cat", "dan");
    await createRoom(ann, "r", "Ann");
    await join(bob, "r", "Bob");
    await join(cat, "r", "Cat");
    await join(dan, "r", "Dan");
    const set = await admin(
      ann,
      "r",
      "<item jid='bob@localhost' affiliation='admin'/><item jid='cat@localhost' affiliation='member'/>",
    );
    assert.equal(set.attrs.type, "result");
    const bobNow = await dan.waitFor((e) =>
      e.attrs.from === `r@${MUC}/Bob` && item(e).affiliation === "admin"
    );
    assert.equal(item(bobNow).role, "moderator");
    // Admins read member lists but only owners read or change owner and admin lists.
    const members = await admin(bob, "r", "<item affiliation='member'/>", "get");
    assert.deepEqual(
      members.child("query")!.elements("item").map((i) => i.attrs.jid),
      ["cat@localhost"],
    );
    const admins = await admin(bob, "r", "<item affiliation='admin'/>", "get");
    assert.equal(errorCondition(admins), "forbidden");
    const owners = await admin(ann, "r", "<item affiliation='owner'/>", "get");
    assert.deepEqual(
      owners.child("query")!.elements("item").map((i) => i.attrs.jid),
      ["ann@localhost"],
    );
    const promote = await admin(bob, "r", "<item jid='cat@localhost' affiliation='owner'/>");
    assert.equal(errorCondition(promote), "not-allowed");
    const participantTry = await admin(
      cat,
      "r",
      "<item jid='dan@localhost' affiliation='member'/>",
    );
    assert.equal(errorCondition(participantTry), "forbidden");
    const lastOwner = await admin(ann, "r", "<item jid='ann@localhost' affiliation='member'/>");
    assert.equal(errorCondition(lastOwner), "conflict");

    // The room becomes members-only: Dan (no affiliation) leaves with 322.
    await ownerSubmit(ann, "r", field("muc#roomconfig_membersonly", "1"));
    const dropped = await dan.waitFor(isPresence(`r@${MUC}/Dan`, "unavailable"));
    assert.deepEqual(statusCodes(dropped).sort(), [110, 322]);
    // Cat loses membership in a members-only room: 321.
    await admin(bob, "r", "<item jid='cat@localhost' affiliation='none'/>");
    const lost = await cat.waitFor(isPresence(`r@${MUC}/Cat`, "unavailable"));
    assert.deepEqual(statusCodes(lost).sort(), [110, 321]);
    const again = await join(cat, "r", "Cat");
    assert.equal(errorCondition(again), "registration-required");
  },
);

withServer("MUC: destroy with reason and alternate venue", mucServer(), async (t) => {
  const [ann, bob] = await accounts(t, "ann", "bob");
  await createRoom(ann, "old", "Ann");
  await join(bob, "old", "Bob");
  const notOwner = await bob.iq(
    "set",
    `<query xmlns='${NS.mucOwner}'><destroy/></query>`,
    `old@${MUC}`,
  );
  assert.equal(errorCondition(notOwner), "forbidden");
  const r = await ann.iq(
    "set",
    `<query xmlns='${NS.mucOwner}'><destroy jid='new@${MUC}'><reason>moved</reason></destroy></query>`,
    `old@${MUC}`,
  );
  assert.equal(r.attrs.type, "result");
  const gone = await bob.waitFor(isPresence(`old@${MUC}/Bob`, "unavailable"));
  const d = gone.child("x", NS.mucUser)!.child("destroy")!;
  assert.equal(d.attrs.jid, `new@${MUC}`);
  assert.equal(d.childText("reason"), "moved");
  assert.equal(item(gone).role, "none");
  const info = await bob.iq("get", `<query xmlns='${NS.discoInfo}'/>`, `old@${MUC}`);
  assert.equal(errorCondition(info), "item-not-found");
});

serverTest("MUC: persistent rooms come back after a restart; temporary ones do not", async () => {
  let t = await startServer(mucServer());
  try {
    for (const u of ["ann", "bob"]) await t.addUser(u);
    const ann = await login(t.port, "ann");
    await join(ann, "keep", "Ann");
    await ownerSubmit(
      ann,
      "keep",
      field("muc#roomconfig_persistentroom", "1") + field("muc#roomconfig_roomname", "Kept") +
        field("muc#roomconfig_membersonly", "1"),
    );
    await admin(ann, "keep", "<item jid='bob@localhost' affiliation='member'/>");
    ann.send(`<message to='keep@${MUC}' type='groupchat'><subject>Still here</subject></message>`);
    await ann.waitFor((e) => e.childText("subject") === "Still here");
    await createRoom(ann, "temp", "Ann");
    // Shutdown: occupants are told with 332 before the stream ends.
    const stopping = t.restart();
    const notice = await ann.waitFor(isPresence(`keep@${MUC}/Ann`, "unavailable"));
    assert.ok(statusCodes(notice).includes(332));
    t = await stopping;

    const bob = await login(t.port, "bob");
    const info = await bob.iq("get", `<query xmlns='${NS.discoInfo}'/>`, `keep@${MUC}`);
    assert.equal(info.child("query")!.child("identity")!.attrs.name, "Kept");
    const entered = await join(bob, "keep", "Bob");
    assert.equal(item(entered).affiliation, "member", "affiliations were kept");
    const subject = await bob.waitFor((e) => e.name === "message" && !!e.child("subject"));
    assert.equal(subject.childText("subject"), "Still here");
    const temp = await bob.iq("get", `<query xmlns='${NS.discoInfo}'/>`, `temp@${MUC}`);
    assert.equal(errorCondition(temp), "item-not-found");
    // Destroying the room removes it from storage too.
    const ann2 = await login(t.port, "ann");
    await ann2.iq("set", `<query xmlns='${NS.mucOwner}'><destroy/></query>`, `keep@${MUC}`);
    t = await t.restart();
    const ann3 = await login(t.port, "ann");
    const after = await ann3.iq("get", `<query xmlns='${NS.discoInfo}'/>`, `keep@${MUC}`);
    assert.equal(errorCondition(after), "item-not-found");
  } finally {
    await t.stop();
  }
});

withServer("parley rooms lists the running server's rooms", mucServer(), async (t) => {
  const [ann] = await accounts(t, "ann");
  await join(ann, "kept", "Ann");
  await ownerSubmit(
    ann,
    "kept",
    field("muc#roomconfig_persistentroom", "1") + field("muc#roomconfig_roomname", "Kept"),
  );
  await join(ann, "fresh", "Ann"); // created, not configured yet: locked
  const file = `${t.dataDir}/parley.yaml`;
  await Deno.writeTextFile(file, `data_dir: ${t.dataDir}\n`);
  const out = await parley(["rooms", "--json", "--config", file]);
  assert.equal(out.code, 0, out.stderr);
  assert.deepEqual(JSON.parse(out.stdout), [
    {
      jid: `fresh@${MUC}`,
      name: "",
      occupants: 1,
      persistent: false,
      public: true,
      membersOnly: false,
      locked: true,
    },
    {
      jid: `kept@${MUC}`,
      name: "Kept",
      occupants: 1,
      persistent: true,
      public: true,
      membersOnly: false,
      locked: false,
    },
  ]);
  const text = await parley(["rooms", "--config", file]);
  assert.match(
    text.stdout,
    /kept@conference\.localhost {2}occupants=1 {2}persistent,public,open {2}"Kept"/,
  );
});

withServer(
  "MUC: rooms owned per account and affiliations per room are capped",
  mucServer({ max_rooms_per_user: 2, max_affiliations: 3, admins: ["root@localhost"] }),
  async (t) => {
    const [ann, bob, root] = await accounts(t, "ann", "bob", "root");
    await createRoom(ann, "one", "Ann");
    await createRoom(ann, "two", "Ann");
    const third = await join(ann, "three", "Ann");
    assert.equal(errorCondition(third), "not-allowed");
    assert.equal(t.server.mucs.get(MUC)!.rooms.has("three"), false);
    // Rooms owned by having been made owner count too; service admins are not held to it.
    await createRoom(bob, "bobs", "Bob");
    await admin(bob, "bobs", "<item jid='ann@localhost' affiliation='owner'/>");
    const stillFull = await join(ann, "three", "Ann");
    assert.equal(errorCondition(stillFull), "not-allowed");
    for (const r of ["r1", "r2", "r3"]) await createRoom(root, r, "Root");
    // A room that is gone no longer counts: destroyed, or temporary and left by its last occupant.
    await ann.iq("set", `<query xmlns='${NS.mucOwner}'><destroy/></query>`, `one@${MUC}`);
    ann.send(`<presence to='bobs@${MUC}/Ann' type='unavailable'/>`);
    bob.send(`<presence to='bobs@${MUC}/Bob' type='unavailable'/>`);
    await bob.waitFor(isPresence(`bobs@${MUC}/Bob`, "unavailable"));
    await createRoom(ann, "three", "Ann");

    // Affiliations: Ann (owner) plus two make three; a fourth is refused and nothing changes.
    const members = await admin(
      ann,
      "two",
      "<item jid='bob@localhost' affiliation='member'/><item jid='cat@localhost' affiliation='outcast'/>",
    );
    assert.equal(members.attrs.type, "result");
    const over = await admin(
      ann,
      "two",
      "<item jid='bob@localhost' affiliation='admin'/><item jid='dan@localhost' affiliation='member'/>",
    );
    assert.equal(errorCondition(over), "not-allowed");
    const list = await admin(ann, "two", "<item affiliation='admin'/>", "get");
    assert.equal(
      list.child("query")!.elements("item").length,
      0,
      "a refused request changed nothing",
    );
    // Changing or removing an existing affiliation is always allowed, and frees room.
    assert.equal(
      (await admin(ann, "two", "<item jid='bob@localhost' affiliation='admin'/>")).attrs.type,
      "result",
    );
    await admin(ann, "two", "<item jid='cat@localhost' affiliation='none'/>");
    const dan = await admin(ann, "two", "<item jid='dan@localhost' affiliation='member'/>");
    assert.equal(dan.attrs.type, "result");
    // An invitation into a full members-only room cannot make the invitee a member.
    await ownerSubmit(ann, "two", field("muc#roomconfig_membersonly", "1"));
    ann.send(
      `<message to='two@${MUC}'><x xmlns='${NS.mucUser}'><invite to='eve@localhost'/></x></message>`,
    );
    const invite = await ann.waitFor((e) => e.name === "message" && e.attrs.type === "error");
    assert.equal(errorCondition(invite), "not-allowed");
  },
);
