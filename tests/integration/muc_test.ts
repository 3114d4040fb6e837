// Multi-User Chat (XEP-0045): discovery, creation and configuration, entering and leaving.
import assert from "node:assert/strict";
import { SLIXMPP_LISTENERS, withServer } from "../helpers/server.ts";
import { interopPair } from "../helpers/process.ts";
import { NS } from "../../src/xml/ns.ts";
import type { Element } from "../../src/xml/element.ts";
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

const features = (info: Element) =>
  info.child("query")!.elements("feature").map((f) => f.attrs.var!);
const CFG = "muc#roomconfig_";

withServer(
  "MUC: service discovery, creation locked until configured, full form",
  mucServer(),
  async (t) => {
    const [ann, bob] = await accounts(t, "ann", "bob");
    const items = await ann.iq("get", `<query xmlns='${NS.discoItems}'/>`, "localhost");
    assert.ok(items.child("query")!.elements("item").some((i) => i.attrs.jid === MUC));
    const info = await ann.iq("get", `<query xmlns='${NS.discoInfo}'/>`, MUC);
    const id = info.child("query")!.child("identity")!;
    assert.equal(id.attrs.category, "conference");
    assert.equal(id.attrs.type, "text");
    assert.ok(features(info).includes(NS.muc));

    // Creation: 201, owner/moderator, locked for others until configured.
    const self = await join(ann, "lobby", "Ann");
    assert.deepEqual(statusCodes(self).sort(), [110, 201]);
    assert.equal(item(self).affiliation, "owner");
    assert.equal(item(self).role, "moderator");
    const locked = await join(bob, "lobby", "Bob");
    assert.equal(locked.attrs.type, "error");
    assert.equal(errorCondition(locked), "item-not-found");
    const hidden = await bob.iq("get", `<query xmlns='${NS.discoInfo}'/>`, `lobby@${MUC}`);
    assert.equal(errorCondition(hidden), "item-not-found");

    // The owner reads the form and submits every field.
    const form = await ann.iq("get", `<query xmlns='${NS.mucOwner}'/>`, `lobby@${MUC}`);
    const vars = form.child("query")!.child("x", NS.dataForms)!.elements("field").map((f) =>
      f.attrs.var
    );
    for (
      const v of [
        "roomname",
        "roomdesc",
        "persistentroom",
        "publicroom",
        "membersonly",
        "moderatedroom",
        "passwordprotectedroom",
        "roomsecret",
        "whois",
        "maxusers",
        "changesubject",
        "allowinvites",
        "allowpm",
      ]
    ) assert.ok(vars.includes(CFG + v), v);
    assert.ok(vars.includes("muc#maxhistoryfetch"));
    const bad = await ownerSubmit(ann, "lobby", field(CFG + "whois", "everybody"));
    assert.equal(errorCondition(bad), "not-acceptable");
    const ok = await ownerSubmit(
      ann,
      "lobby",
      field("FORM_TYPE", NS.mucRoomConfig) + field(CFG + "roomname", "The Lobby") +
        field(CFG + "roomdesc", "Say hello") + field(CFG + "persistentroom", "1") +
        field(CFG + "publicroom", "1") + field(CFG + "whois", "anyone") +
        field(CFG + "maxusers", "30") + field(CFG + "changesubject", "1") +
        field(CFG + "allowinvites", "1") + field(CFG + "allowpm", "participants") +
        field("muc#maxhistoryfetch", "5"),
    );
    assert.equal(ok.attrs.type, "result");
    const roomInfo = await bob.iq("get", `<query xmlns='${NS.discoInfo}'/>`, `lobby@${MUC}`);
    const f = features(roomInfo);
    for (
      const v of [
        NS.muc,
        "muc_persistent",
        "muc_public",
        "muc_open",
        "muc_unmoderated",
        "muc_unsecured",
        "muc_nonanonymous",
        NS.mucSelfPing,
      ]
    ) assert.ok(f.includes(v), v);
    assert.equal(roomInfo.child("query")!.child("identity")!.attrs.name, "The Lobby");
    const roominfo = roomInfo.child("query")!.child("x", NS.dataForms)!;
    const desc = roominfo.elements("field").find((x) => x.attrs.var === "muc#roominfo_description");
    assert.equal(desc?.childText("value"), "Say hello");
    const list = await bob.iq("get", `<query xmlns='${NS.discoItems}'/>`, MUC);
    assert.deepEqual(
      list.child("query")!.elements("item").map((i) => [i.attrs.jid, i.attrs.name]),
      [[`lobby@${MUC}`, "The Lobby"]],
    );
    // Now open: Bob enters a non-anonymous room (status 100) and sees Ann's real JID.
    const bobSelf = await join(bob, "lobby", "Bob");
    assert.deepEqual(statusCodes(bobSelf).sort(), [100, 110]);
    const annSeen = await bob.waitFor(isPresence(`lobby@${MUC}/Ann`));
    assert.equal(item(annSeen).jid, ann.jid);
    // Hidden rooms stay out of the list; a non-owner cannot configure.
    await createRoom(ann, "secret", "Ann");
    await ownerSubmit(ann, "secret", field(CFG + "publicroom", "0"));
    const again = await bob.iq("get", `<query xmlns='${NS.discoItems}'/>`, MUC);
    assert.equal(again.child("query")!.elements("item").length, 1);
    const denied = await bob.iq("get", `<query xmlns='${NS.mucOwner}'/>`, `lobby@${MUC}`);
    assert.equal(errorCondition(denied), "forbidden");
  },
);

withServer(
  "MUC: entering order, semi-anonymous JIDs, leaving, nick conflict and 210",
  mucServer(),
  async (t) => {
    const [ann, bob, cat] = await accounts(t, "ann", "bob", "cat");
    await createRoom(ann, "room", "Ann");
    // Subject on entry even when empty; the room is semi-anonymous by default.
    await join(bob, "room", "Bob");
    const subject = await bob.waitFor((e) => e.name === "message" && !!e.child("subject"));
    assert.equal(subject.childText("subject"), "");
    const annForBob = bob.received.find((e) => e.attrs.from === `room@${MUC}/Ann`)!;
    assert.equal(item(annForBob).jid, undefined, "a participant does not see real JIDs");
    const bobForAnn = await ann.waitFor(isPresence(`room@${MUC}/Bob`));
    assert.equal(item(bobForAnn).jid, bob.jid, "a moderator sees real JIDs");
    assert.equal(item(bobForAnn).role, "participant");
    assert.equal(item(bobForAnn).affiliation, "none");

    // Cat: both occupants' presence come before her own self-presence.
    cat.send(`<presence to='room@${MUC}/Cat'><x xmlns='${NS.muc}'/></presence>`);
    await cat.waitFor((e) => statusCodes(e).includes(110));
    const order = cat.received.filter((e) => e.name === "presence").map((e) => e.attrs.from);
    assert.deepEqual(order.slice(0, 2).sort(), [`room@${MUC}/Ann`, `room@${MUC}/Bob`]);

    // Conflicts are case-insensitive; the service normalizes nicks and says so with 210.
    const dan = await login(t.port, "ann", "other");
    const conflict = await join(dan, "room", "bob");
    assert.equal(errorCondition(conflict), "conflict");
    const [eve] = await accounts(t, "eve");
    const spaced = await join(eve, "room", "Eve  Smith", "", "Eve Smith");
    assert.ok(statusCodes(spaced).includes(210));
    assert.equal(spaced.attrs.from, `room@${MUC}/Eve Smith`);
    const noNick = await eve.iq("get", `<query xmlns='${NS.discoInfo}'/>`, `room@${MUC}`);
    assert.equal(noNick.attrs.type, "result");
    eve.send(`<presence to='room@${MUC}'/>`);
    const bare = await eve.waitFor((e) => e.name === "presence" && e.attrs.type === "error");
    assert.equal(errorCondition(bare), "jid-malformed");
    // A blank nick cannot create a room, and leaves none behind.
    eve.send(`<presence to='ghost@${MUC}/   '><x xmlns='${NS.muc}'/></presence>`);
    const blank = await eve.waitFor((e) => e.name === "presence" && e.attrs.type === "error");
    assert.equal(errorCondition(blank), "jid-malformed");
    assert.equal(t.server.mucs.get(MUC)!.rooms.has("ghost"), false);

    // Leaving: unavailable to everyone, with 110 to the one leaving.
    cat.send(`<presence to='room@${MUC}/Cat' type='unavailable'><status>bye</status></presence>`);
    const catSelf = await cat.waitFor(isPresence(`room@${MUC}/Cat`, "unavailable"));
    assert.ok(statusCodes(catSelf).includes(110));
    const catGone = await bob.waitFor(isPresence(`room@${MUC}/Cat`, "unavailable"));
    assert.equal(catGone.childText("status"), "bye");
    assert.equal(item(catGone).role, "none");

    // A dropped connection leaves too (unavailable broadcast), and so does a logout.
    bob.drop();
    await ann.waitFor(isPresence(`room@${MUC}/Bob`, "unavailable"));
    eve.close();
    await ann.waitFor(isPresence(`room@${MUC}/Eve Smith`, "unavailable"));
  },
);

withServer("MUC: several resources of one account share a nick", mucServer(), async (t) => {
  await t.addUser("ann");
  await t.addUser("bob");
  const ann = await login(t.port, "ann");
  const bob1 = await login(t.port, "bob", "phone");
  const bob2 = await login(t.port, "bob", "laptop");
  await createRoom(ann, "r", "Ann");
  await join(bob1, "r", "Bob");
  await ann.waitFor(isPresence(`r@${MUC}/Bob`));
  await join(bob2, "r", "Bob");
  bob2.send(`<message to='r@${MUC}' type='groupchat'><body>from laptop</body></message>`);
  for (const c of [bob1, bob2, ann]) {
    const m = await c.waitFor((e) => e.name === "message" && e.childText("body") === "from laptop");
    assert.equal(m.attrs.from, `r@${MUC}/Bob`);
  }
  // A private message to the nick reaches both sessions.
  ann.send(`<message to='r@${MUC}/Bob' type='chat'><body>psst</body></message>`);
  for (const c of [bob1, bob2]) {
    await c.waitFor((e) => e.childText("body") === "psst" && e.attrs.from === `r@${MUC}/Ann`);
  }
  // One session leaving does not make the occupant leave.
  bob1.send(`<presence to='r@${MUC}/Bob' type='unavailable'/>`);
  await bob1.waitFor(isPresence(`r@${MUC}/Bob`, "unavailable"));
  await assert.rejects(ann.waitFor(isPresence(`r@${MUC}/Bob`, "unavailable"), 300));
  bob2.send(`<presence to='r@${MUC}/Bob' type='unavailable'/>`);
  await ann.waitFor(isPresence(`r@${MUC}/Bob`, "unavailable"));
});

withServer(
  "MUC: password, members-only, max occupants, bans, creation policy",
  mucServer({ create: "admins", admins: ["ann@localhost"] }),
  async (t) => {
    const [ann, bob, cat, dan] = await accounts(t, "ann", "bob", "cat", "dan");
    const notAllowed = await join(bob, "mine", "Bob");
    assert.equal(errorCondition(notAllowed), "not-allowed");

    await join(ann, "pw", "Ann");
    await ownerSubmit(
      ann,
      "pw",
      field(CFG + "passwordprotectedroom", "1") + field(CFG + "roomsecret", "s3cret") +
        field(CFG + "maxusers", "2"),
    );
    const none = await join(bob, "pw", "Bob");
    assert.equal(errorCondition(none), "not-authorized");
    assert.equal(none.child("error")!.attrs.type, "auth");
    const wrong = await join(bob, "pw", "Bob", "<password>nope</password>");
    assert.equal(errorCondition(wrong), "not-authorized");
    const right = await join(bob, "pw", "Bob", "<password>s3cret</password>");
    assert.equal(right.attrs.type, undefined);
    const full = await join(cat, "pw", "Cat", "<password>s3cret</password>");
    assert.equal(errorCondition(full), "service-unavailable");
    assert.equal(full.child("error")!.attrs.type, "wait");

    await join(ann, "club", "Ann");
    await ownerSubmit(ann, "club", field(CFG + "membersonly", "1"));
    const reg = await join(cat, "club", "Cat");
    assert.equal(errorCondition(reg), "registration-required");
    const add = await ann.iq(
      "set",
      `<query xmlns='${NS.mucAdmin}'><item jid='cat@localhost' affiliation='member'/></query>`,
      `club@${MUC}`,
    );
    assert.equal(add.attrs.type, "result");
    const member = await join(cat, "club", "Cat");
    assert.equal(item(member).affiliation, "member");

    // Ban: the banned occupant is removed with 301 and cannot come back.
    await join(dan, "club", "Dan").then((e) =>
      assert.equal(errorCondition(e), "registration-required")
    );
    const ban = await ann.iq(
      "set",
      `<query xmlns='${NS.mucAdmin}'><item jid='cat@localhost' affiliation='outcast'><reason>spam</reason></item></query>`,
      `club@${MUC}`,
    );
    assert.equal(ban.attrs.type, "result");
    const banned = await cat.waitFor(isPresence(`club@${MUC}/Cat`, "unavailable"));
    assert.deepEqual(statusCodes(banned).sort(), [110, 301]);
    assert.equal(item(banned).affiliation, "outcast");
    assert.equal(mucUserReason(banned), "spam");
    const back = await join(cat, "club", "Cat");
    assert.equal(errorCondition(back), "forbidden");
  },
);

function mucUserReason(e: Element): string | undefined {
  return e.child("x", NS.mucUser)?.child("item")?.childText("reason");
}

withServer(
  "interop: slixmpp's XEP-0045 plugin: create, configure, history, chat, moderate, refuse, destroy",
  {
    ...mucServer(),
    listeners: SLIXMPP_LISTENERS,
  },
  async (t) => {
    const r = await interopPair(
      t,
      "muc_session.py",
      "owner@localhost/o",
      "guest@localhost/g",
      `interop@${MUC}`,
    );
    assert.ok((r.services as string[]).includes(MUC));
    assert.deepEqual(r.created_codes, [110, 201]);
    assert.ok((r.form_fields as string[]).includes("muc#roomconfig_roomname"));
    assert.ok((r.room_features as string[]).includes("muc_nonanonymous"));
    assert.deepEqual(r.guest_codes, [100, 110]);
    assert.deepEqual(r.guest_sees, ["Guest", "Owner"]);
    assert.equal(r.owner_real_jid_seen, "owner@localhost/o");
    assert.equal(r.groupchat_from, `interop@${MUC}/Owner`);
    assert.equal(r.subject, "Topic");
    assert.equal(r.pm_from, `interop@${MUC}/Guest`);
    assert.deepEqual(r.members, ["guest@localhost"]);
    assert.equal(r.guest_role, "visitor");
    assert.equal(r.self_ping, "result");
    assert.equal(r.invite_from, "owner@localhost/o");
    assert.deepEqual(r.history, ["early2", "early3"]);
    assert.equal(r.new_nick, "Guesty");
    assert.deepEqual(r.kick_codes, [110, 307]);
    assert.equal(r.club_without_password, "not-authorized");
    assert.deepEqual(r.ban_codes, [110, 301]);
    assert.equal(r.banned_join, "forbidden");
    assert.equal(r.locked_join, "item-not-found");
    assert.equal(r.destroy_reason, "done");
  },
);

withServer(
  "MUC: maxusers is a list-single of steps up to the cap; any number up to it is accepted",
  mucServer({ max_occupants: 50 }),
  async (t) => {
    const [ann] = await accounts(t, "ann");
    await join(ann, "sized", "Ann");
    const maxUsersField = async () => {
      const form = await ann.iq("get", `<query xmlns='${NS.mucOwner}'/>`, `sized@${MUC}`);
      const fields = form.child("query")!.child("x", NS.dataForms)!.elements("field");
      const f = fields.find((f) => f.attrs.var === CFG + "maxusers")!;
      return {
        type: f.attrs.type,
        value: f.childText("value"),
        options: f.elements("option").map((o) => o.childText("value")),
      };
    };
    // Registered as list-single (XEP-0045 §15.5.3): aioxmpp refuses a form that types it otherwise.
    assert.deepEqual(await maxUsersField(), {
      type: "list-single",
      value: "50",
      options: ["5", "10", "20", "50"],
    });
    // A number that is not among the options, under the cap, is taken and offered from then on.
    const custom = await ownerSubmit(ann, "sized", field(CFG + "maxusers", "37"));
    assert.equal(custom.attrs.type, "result");
    assert.deepEqual(await maxUsersField(), {
      type: "list-single",
      value: "37",
      options: ["5", "10", "20", "37", "50"],
    });
    const over = await ownerSubmit(ann, "sized", field(CFG + "maxusers", "51"));
    assert.equal(errorCondition(over), "not-acceptable");
    assert.equal((await maxUsersField()).value, "37");
  },
);

withServer(
  "MUC: blocking one occupant (XEP-0191) does not evict the blocker; a proven departure does",
  mucServer(),
  async (t) => {
    const [ann, bob, cat] = await accounts(t, "ann", "bob", "cat");
    await createRoom(ann, "r", "Ann");
    await join(bob, "r", "Bob");
    await join(cat, "r", "Cat");
    const blocked = await ann.iq(
      "set",
      `<block xmlns='${NS.blocking}'><item jid='r@${MUC}/Bob'/></block>`,
    );
    assert.equal(blocked.attrs.type, "result");
    // Ann's server refuses Bob's groupchat and private message with service-unavailable, as it
    // would for a missing session: the room must not take that for Ann's departure.
    bob.send(`<message to='r@${MUC}' type='groupchat'><body>from bob</body></message>`);
    bob.send(`<message to='r@${MUC}/Ann' type='chat'><body>psst</body></message>`);
    await cat.waitFor((e) => e.childText("body") === "from bob");
    cat.send(`<message to='r@${MUC}' type='groupchat'><body>from cat</body></message>`);
    await ann.waitFor((e) => e.childText("body") === "from cat");
    assert.ok(!ann.received.some((e) => e.childText("body") === "from bob"));
    const annLeft = isPresence(`r@${MUC}/Ann`, "unavailable");
    assert.ok(!cat.received.some(annLeft), "Ann was evicted by her own blocklist");
    assert.ok(!ann.received.some(annLeft));

    // An error that proves a session gone still removes it (status 333).
    cat.send(
      `<message to='r@${MUC}/Ann' type='error'><error type='cancel'><gone xmlns='${NS.stanzaErrors}'/></error></message>`,
    );
    const catLeft = await ann.waitFor(isPresence(`r@${MUC}/Cat`, "unavailable"));
    assert.deepEqual(statusCodes(catLeft), [333]);
  },
);
