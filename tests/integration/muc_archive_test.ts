// Room archives (XEP-0313 on MUC) with occupant ids (XEP-0421) and moderation (XEP-0425), between
// raw clients and a real server: what persistent rooms archive and stamp, who may query, the
// owner's switch, occupant ids across nick changes, and a moderator's retraction.
import assert from "node:assert/strict";
import { withServer } from "../helpers/server.ts";
import {
  accounts,
  createRoom,
  field,
  isMessage,
  join,
  MUC,
  mucServer,
  ownerSubmit,
} from "../helpers/muc.ts";
import { archivedCount, bodiesOf, mamQuery, stanzaIdOf } from "../helpers/mam.ts";
import { errorOf } from "../helpers/stanza_errors.ts";
import { NS } from "../../src/xml/ns.ts";
import type { Element } from "../../src/xml/element.ts";

const ROOM = `lounge@${MUC}`;
const say = (body: string, extra = "") =>
  `<message to='${ROOM}' type='groupchat'><body>${body}</body>${extra}</message>`;
const occupantIdOf = (e: Element) => e.child("occupant-id", NS.occupantId)?.attrs.id;
const bodyIs = (body: string) => (e: Element) =>
  isMessage(`${ROOM}/${e.attrs.from?.split("/")[1]}`)(e) && e.childText("body") === body;

async function persistentRoom(t: Parameters<Parameters<typeof withServer>[2]>[0]) {
  const [a, b, c] = await accounts(t, "alice", "bob", "carol");
  await createRoom(a, "lounge", "Alice");
  const configured = await ownerSubmit(a, "lounge", field("muc#roomconfig_persistentroom", "1"));
  assert.equal(configured.attrs.type, "result", `${configured}`);
  await join(b, "lounge", "Bob");
  return { a, b, c };
}

withServer(
  "a persistent room archives and stamps its messages; occupants query it",
  mucServer(),
  async (t) => {
    const { a, b, c } = await persistentRoom(t);
    const info = await b.iq("get", `<query xmlns='${NS.discoInfo}'/>`, ROOM);
    const features = info.child("query")!.elements("feature").map((f) => f.attrs.var);
    for (const f of [NS.mam, NS.mamExtended, NS.sid, NS.occupantId, NS.moderate]) {
      assert.ok(features.includes(f), `${f} not in ${features}`);
    }
    for (let i = 0; i < 12; i++) {
      a.send(
        say(`r${i}`, `<occupant-id xmlns='${NS.occupantId}' id='forged'/>`),
      );
    }
    const live = await b.waitFor(bodyIs("r11"));
    const id = stanzaIdOf(live, ROOM);
    assert.ok(id, `${live}`);
    const occ = occupantIdOf(live);
    assert.ok(occ && occ !== "forged", `${live}`);
    assert.equal(live.elements("occupant-id").length, 1);
    await archivedCount(b, 12, { to: ROOM });
    const page = await mamQuery(b, { to: ROOM, max: 5, before: "" });
    assert.deepEqual(bodiesOf(page), ["r7", "r8", "r9", "r10", "r11"]);
    assert.equal(page.results.at(-1)!.id, id);
    assert.equal(page.results.at(-1)!.message.attrs.from, `${ROOM}/Alice`);
    assert.equal(occupantIdOf(page.results.at(-1)!.message), occ);
    // Full-text on the room's archive; metadata.
    assert.deepEqual(bodiesOf(await mamQuery(b, { to: ROOM, text: "r3" })), ["r3"]);
    const meta = await b.iq("get", `<metadata xmlns='${NS.mam}'/>`, ROOM);
    assert.equal(meta.child("metadata")!.child("end")!.attrs.id, id);
    // Not an occupant of an open room: forbidden.
    assert.equal(errorOf((await mamQuery(c, { to: ROOM })).answer).condition, "forbidden");
    // The occupant id survives a nick change; presence carries it too.
    b.send(`<presence to='${ROOM}/Robert'/>`);
    const renamed = await a.waitFor((e) =>
      e.name === "presence" && e.attrs.from === `${ROOM}/Robert`
    );
    const bobId = occupantIdOf(renamed);
    assert.ok(bobId);
    // A private message carries the sender's occupant id, never one it forged.
    b.send(
      `<message to='${ROOM}/Alice' type='chat'><body>psst</body>` +
        `<occupant-id xmlns='${NS.occupantId}' id='FORGED'/></message>`,
    );
    const pm = await a.waitFor((e) => e.childText("body") === "psst");
    assert.deepEqual(pm.elements("occupant-id").map((e) => e.attrs.id), [bobId]);
    b.send(say("as robert"));
    const said = await a.waitFor((e) => e.childText("body") === "as robert");
    assert.equal(occupantIdOf(said), bobId);
    a.close();
    b.close();
    c.close();
  },
);

withServer(
  "the owner turns archiving off; temporary rooms never archive",
  mucServer(),
  async (t) => {
    const { a, b } = await persistentRoom(t);
    const form = await a.iq("get", `<query xmlns='${NS.mucOwner}'/>`, ROOM);
    assert.ok(`${form}`.includes("muc#roomconfig_enablearchiving"), `${form}`);
    await ownerSubmit(a, "lounge", field("muc#roomconfig_enablearchiving", "0"));
    a.send(say("unarchived"));
    const live = await b.waitFor(bodyIs("unarchived"));
    assert.equal(stanzaIdOf(live, ROOM), undefined);
    assert.equal((await mamQuery(b, { to: ROOM })).count, 0);
    await createRoom(a, "temp", "Alice");
    a.send(`<message to='temp@${MUC}' type='groupchat'><body>gone</body></message>`);
    const temp = await a.waitFor((e) => e.childText("body") === "gone");
    assert.equal(stanzaIdOf(temp, `temp@${MUC}`), undefined);
    a.close();
    b.close();
  },
);

withServer("members-only rooms: the archive is for members", mucServer(), async (t) => {
  const { a, b, c } = await persistentRoom(t);
  await ownerSubmit(a, "lounge", field("muc#roomconfig_membersonly", "1"));
  a.send(say("members"));
  await archivedCount(a, 1, { to: ROOM });
  assert.equal(errorOf((await mamQuery(c, { to: ROOM })).answer).condition, "forbidden");
  // Bob became a member when the room went members-only? Not unless made one: give him that.
  const made = await a.iq(
    "set",
    `<query xmlns='${NS.mucAdmin}'><item jid='carol@localhost' affiliation='member'/></query>`,
    ROOM,
  );
  assert.equal(made.attrs.type, "result", `${made}`);
  assert.deepEqual(bodiesOf(await mamQuery(c, { to: ROOM })), ["members"]);
  a.close();
  b.close();
  c.close();
});

withServer(
  "a moderator retracts a message: tombstone in the archive, retraction live",
  mucServer(),
  async (t) => {
    const { a, b } = await persistentRoom(t);
    b.send(say("something rude"));
    const live = await a.waitFor(bodyIs("something rude"));
    const id = stanzaIdOf(live, ROOM)!;
    await archivedCount(a, 1, { to: ROOM });
    const moderate = (c: typeof a, target: string) =>
      c.iq(
        "set",
        `<moderate id='${target}' xmlns='${NS.moderate}'><retract xmlns='${NS.retract}'/><reason>spam</reason></moderate>`,
        ROOM,
      );
    assert.equal(errorOf(await moderate(b, id)).condition, "forbidden", "bob is no moderator");
    assert.equal(errorOf(await moderate(a, "nope")).condition, "item-not-found");
    const ok = await moderate(a, id);
    assert.equal(ok.attrs.type, "result", `${ok}`);
    const retraction = await b.waitFor((e) => e.child("retract", NS.retract) !== undefined);
    const retract = retraction.child("retract", NS.retract)!;
    assert.equal(retract.attrs.id, id);
    assert.equal(retract.child("moderated", NS.moderate)!.attrs.by, `${ROOM}/Alice`);
    assert.equal(retract.childText("reason"), "spam");
    await archivedCount(a, 2, { to: ROOM });
    const [tomb, archivedRetraction] = (await mamQuery(a, { to: ROOM })).results;
    assert.equal(tomb.id, id);
    assert.equal(tomb.message.childText("body"), undefined, `${tomb.message}`);
    assert.ok(tomb.message.child("retracted", NS.retract), `${tomb.message}`);
    assert.ok(occupantIdOf(tomb.message));
    assert.equal(archivedRetraction.message.child("retract", NS.retract)!.attrs.id, id);
    assert.deepEqual(bodiesOf(await mamQuery(a, { to: ROOM, text: "rude" })), []);
    // A newcomer's history does not have it.
    const c2 = (await accounts(t, "dave"))[0];
    await join(c2, "lounge", "Dave");
    await c2.waitFor((e) => e.name === "message" && e.child("subject") !== undefined);
    assert.ok(!c2.received.some((e) => e.childText("body") === "something rude"));
    a.close();
    b.close();
    c2.close();
  },
);

withServer(
  "a room's archive goes with the room: a room made again at its address starts with none",
  mucServer(),
  async (t) => {
    const { a, b, c } = await persistentRoom(t);
    a.send(say("before"));
    await archivedCount(a, 1, { to: ROOM });
    // Made temporary, then emptied: the room ends, and its archive with it.
    await ownerSubmit(a, "lounge", field("muc#roomconfig_persistentroom", "0"));
    b.send(`<presence to='${ROOM}/Bob' type='unavailable'/>`);
    a.send(`<presence to='${ROOM}/Alice' type='unavailable'/>`);
    await a.waitFor((e) => e.name === "presence" && e.attrs.from === `${ROOM}/Alice`);
    await createRoom(c, "lounge", "Carol");
    await ownerSubmit(c, "lounge", field("muc#roomconfig_persistentroom", "1"));
    await archivedCount(c, 0, { to: ROOM });
    a.close();
    b.close();
    c.close();
  },
);
