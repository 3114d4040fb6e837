// Parses one stored, trusted stanza string back into an Element (offline messages, vCards).
import { SaxesParser } from "saxes";
import { type Attrs, Element } from "./element.ts";

export function parseStanza(xml: string): Element | null {
  const sax = new SaxesParser({ xmlns: true });
  const stack: Element[] = [];
  const uris: string[] = ["jabber:client"];
  let root: Element | null = null;
  sax.on("opentag", (tag) => {
    const attrs: Attrs = {};
    if (tag.uri !== uris[uris.length - 1]) attrs.xmlns = tag.uri;
    for (const k in tag.attributes) {
      const a = tag.attributes[k];
      if (a.prefix !== "xmlns" && a.name !== "xmlns") attrs[a.name] = a.value;
    }
    const el = new Element(tag.local, attrs);
    if (stack.length) stack[stack.length - 1].children.push(el);
    else root = el;
    stack.push(el);
    uris.push(tag.uri);
  });
  sax.on("closetag", () => {
    stack.pop();
    uris.pop();
  });
  sax.on("text", (t) => stack.length && stack[stack.length - 1].children.push(t));
  try {
    // Stored top-level stanzas carry no xmlns: bind jabber:client so children resolve as before.
    sax.write(`<wrap xmlns="jabber:client">${xml}</wrap>`).close();
  } catch {
    return null;
  }
  return (root as Element | null)?.children.find((c): c is Element => typeof c !== "string") ??
    null;
}
