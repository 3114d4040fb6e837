// Stored XML (offline messages, vCards, private XML) comes back with every namespace intact: the
// bytes received are read by a namespace-aware parser of the test's own and compared, by expanded
// names, with what was sent.
import assert from "node:assert/strict";
import { SaxesParser } from "saxes";
import { RawClient } from "../helpers/raw_client.ts";
import { withServer } from "../helpers/server.ts";
import { NS } from "../../src/xml/ns.ts";

const XMLNS = "http://www.w3.org/2000/xmlns/";

/** An element by what XML namespaces say it is (`{uri}local`), whatever prefixes were used. */
interface Expanded {
  name: string;
  attrs: Record<string, string>;
  children: (Expanded | string)[];
}

/** A namespace-aware parser fed `xml` inside a jabber:client wrapper: its top elements, and the
 * errors it reported (an undeclared prefix is one). */
function reader() {
  const sax = new SaxesParser({ xmlns: true });
  const top: Expanded[] = [];
  const errors: string[] = [];
  const stack: Expanded[] = [];
  sax.on("opentag", (tag) => {
    const attrs: Record<string, string> = {};
    for (const a of Object.values(tag.attributes)) {
      if (a.uri !== XMLNS) attrs[`{${a.uri}}${a.local}`] = a.value;
    }
    const el: Expanded = { name: `{${tag.uri}}${tag.local}`, attrs, children: [] };
    if (stack.length === 1) top.push(el);
    else stack.at(-1)?.children.push(el);
    stack.push(el);
  });
  sax.on("closetag", () => stack.pop());
  sax.on("text", (t) => stack.at(-1)?.children.push(t));
  sax.on("error", (e) => errors.push(e.message));
  sax.write(`<wrap xmlns='${NS.client}'>`);
  return { top, errors, write: (xml: string) => sax.write(xml) };
}

function expand(xml: string): Expanded {
  const r = reader();
  r.write(xml);
  assert.deepEqual(r.errors, []);
  return r.top[0];
}

/** Reads everything the server sends `c` from now on. */
function listen(c: RawClient) {
  const r = reader();
  const decoder = new TextDecoder();
  c.socket.on("data", (d: Uint8Array) => r.write(decoder.decode(d, { stream: true })));
  return {
    /** The first stanza received with this id (or the parser's errors, as a failure). */
    async stanza(id: string): Promise<Expanded> {
      const deadline = Date.now() + 5000;
      while (Date.now() < deadline) {
        assert.deepEqual(r.errors, [], "what the server sent is namespace-well-formed");
        const el = r.top.find((e) => e.attrs["{}id"] === id);
        if (el) return el;
        await new Promise((res) => setTimeout(res, 10));
      }
      throw new Error(`no stanza with id ${id}`);
    },
  };
}

function child(el: Expanded, name: string): Expanded {
  const c = el.children.find((c): c is Expanded => typeof c !== "string" && c.name === name);
  assert.ok(c, `${el.name} has a child ${name}`);
  return c;
}

const LOGIN = { starttls: false, mech: "PLAIN" } as const;

withServer("an offline message comes back with its namespaced payload intact", {}, async (t) => {
  await t.addUser("ana");
  await t.addUser("ben");
  const ana = await RawClient.login(t.port, "ana", "secret", LOGIN);
  const foo = `<x:foo xmlns:x='urn:a'><x:bar x:attr='1'/></x:foo>`;
  const baz = `<baz xmlns='urn:b' xmlns:y='urn:y' y:at='v'><y:q/></baz>`;
  ana.send(
    `<message to='ben@localhost' type='chat' id='off1' xmlns:f='urn:f' f:mark='m'>` +
      `<body>hi</body>${foo}${baz}</message>`,
  );
  // The ping is answered after the message was handed to offline storage.
  await ana.iq("get", `<ping xmlns='${NS.ping}'/>`, "localhost");
  const ben = await RawClient.login(t.port, "ben", "secret", LOGIN);
  const received = listen(ben);
  ben.send("<presence/>");
  const msg = await received.stanza("off1");
  child(msg, `{${NS.delay}}delay`); // it did go through storage
  assert.equal(msg.attrs["{urn:f}mark"], "m");
  assert.deepEqual(child(msg, "{urn:a}foo"), expand(foo));
  assert.deepEqual(child(msg, "{urn:b}baz"), expand(baz));
  ana.close();
  ben.close();
});

withServer("a vCard and private XML come back with every prefix declared", {}, async (t) => {
  await t.addUser("cy");
  const cy = await RawClient.login(t.port, "cy", "secret", LOGIN);
  const received = listen(cy);
  const vcard = `<vCard xmlns='${NS.vcard}' xmlns:e='urn:ext'><FN>Cy</FN>` +
    `<e:extra e:kind='k'>v</e:extra><NOTE xmlns:q='urn:q' q:lang='z'>n</NOTE></vCard>`;
  cy.send(`<iq type='set' id='v1'>${vcard}</iq>`);
  assert.equal((await received.stanza("v1")).attrs["{}type"], "result");
  cy.send(`<iq type='get' id='v2'><vCard xmlns='${NS.vcard}'/></iq>`);
  assert.deepEqual(child(await received.stanza("v2"), `{${NS.vcard}}vCard`), expand(vcard));

  const storage = `<p:storage xmlns:p='urn:p' xmlns:z='urn:z'><p:item z:flag='1'>` +
    `<z:note p:by='cy'>x</z:note></p:item></p:storage>`;
  cy.send(`<iq type='set' id='p1'><query xmlns='${NS.private}'>${storage}</query></iq>`);
  assert.equal((await received.stanza("p1")).attrs["{}type"], "result");
  cy.send(
    `<iq type='get' id='p2'><query xmlns='${NS.private}'><storage xmlns='urn:p'/></query></iq>`,
  );
  const query = child(await received.stanza("p2"), `{${NS.private}}query`);
  assert.deepEqual(child(query, "{urn:p}storage"), expand(storage));
  cy.close();
});
