// The in-memory form of a stanza. Namespaces are normalized by the parser: an element carries an
// `xmlns` attribute only where its namespace differs from its parent's, so a stanza can be moved
// between streams whose content namespace differs (jabber:client, jabber:component:accept).
import { escapeAttr, escapeText } from "./escape.ts";

export type Attrs = Record<string, string | undefined>;
export type Node = Element | string;

export class Element {
  name: string;
  attrs: Attrs;
  children: Node[];
  /** Serialized form, kept so fan-out serializes once. Dropped by setAttr/append on this element;
   * code that changes a child of an already serialized stanza must work on a clone(). */
  #xml: string | undefined;

  constructor(name: string, attrs: Attrs = {}, children: Node[] = []) {
    this.name = name;
    this.attrs = attrs;
    this.children = children;
  }

  attr(name: string): string | undefined {
    return this.attrs[name];
  }

  setAttr(name: string, value: string | undefined): this {
    this.attrs[name] = value;
    this.#xml = undefined;
    return this;
  }

  get xmlns(): string | undefined {
    return this.attrs.xmlns;
  }

  /** First child element with this name (and namespace, when given). */
  child(name: string, xmlns?: string): Element | undefined {
    for (const c of this.children) {
      if (
        typeof c !== "string" && c.name === name && (xmlns === undefined || c.attrs.xmlns === xmlns)
      ) {
        return c;
      }
    }
    return undefined;
  }

  /** First child element in this namespace, whatever its name. */
  childNs(xmlns: string): Element | undefined {
    for (const c of this.children) if (typeof c !== "string" && c.attrs.xmlns === xmlns) return c;
    return undefined;
  }

  elements(name?: string, xmlns?: string): Element[] {
    const out: Element[] = [];
    for (const c of this.children) {
      if (
        typeof c !== "string" && (name === undefined || c.name === name) &&
        (xmlns === undefined || c.attrs.xmlns === xmlns)
      ) out.push(c);
    }
    return out;
  }

  text(): string {
    let s = "";
    for (const c of this.children) if (typeof c === "string") s += c;
    return s;
  }

  childText(name: string, xmlns?: string): string | undefined {
    return this.child(name, xmlns)?.text();
  }

  /** Appends a child element and returns it (builder style). */
  c(name: string, attrs: Attrs = {}): Element {
    const el = new Element(name, attrs);
    this.append(el);
    return el;
  }

  append(...nodes: Node[]): this {
    for (const n of nodes) this.children.push(n);
    this.#xml = undefined;
    return this;
  }

  /** Appends text and returns this element. */
  t(text: string): this {
    return this.append(text);
  }

  clone(): Element {
    return new Element(
      this.name,
      { ...this.attrs },
      this.children.map((c) => typeof c === "string" ? c : c.clone()),
    );
  }

  toString(): string {
    return this.#xml ??= serialize(this);
  }

  /** The serialized form if one is kept, without keeping one (see serialize). */
  static cached(el: Element): string | undefined {
    return el.#xml;
  }
}

function serialize(el: Element): string {
  let s = "<" + el.name;
  for (const k in el.attrs) {
    const v = el.attrs[k];
    if (v !== undefined) s += " " + k + '="' + escapeAttr(v) + '"';
  }
  if (el.children.length === 0) return s + "/>";
  s += ">";
  // Children are serialized without caching: only the stanza's own string is worth keeping. A
  // child serialized on purpose (a payload fanned out under many addresses) is reused.
  for (const c of el.children) {
    s += typeof c === "string" ? escapeText(c) : Element.cached(c) ?? serialize(c);
  }
  return s + "</" + el.name + ">";
}

/** Builder: x("message", {to}, x("body", {}, "hi")). */
export function x(
  name: string,
  attrs: Attrs = {},
  ...children: (Node | undefined | false)[]
): Element {
  const el = new Element(name, attrs);
  for (const c of children) if (c !== undefined && c !== false) el.children.push(c);
  return el;
}
