// Incremental XMPP stream parser on saxes: bytes in (any chunking), stanzas out.
// Enforces RFC 6120 §11 restricted XML and the configured size/depth limits while parsing, so an
// oversized or hostile stanza is refused before it is buffered whole.
import { SaxesParser, type SaxesTagNS } from "saxes";
import { type Attrs, Element } from "./element.ts";

export const NS_STREAM = "http://etherx.jabber.org/streams";

export interface ParserLimits {
  /** Largest stanza, counted in characters of decoded text (never more than its UTF-8 bytes). */
  maxStanzaSize: number;
  /** Deepest element nesting inside a stanza (the stanza itself is depth 1). */
  maxDepth: number;
}

/** Parts of a SaxesParser that are private in saxes' types: handler slots sax.on() would fill,
 * and its table of state methods. */
interface SaxInternals {
  stateTable: unknown[];
  openTagHandler(tag: SaxesTagNS): void;
  closeTagHandler(): void;
  textHandler(text: string): void;
  cdataHandler(text: string): void;
  doctypeHandler(): void;
  piHandler(): void;
  commentHandler(): void;
  errorHandler(e: Error): void;
}

let sharedStateTable: unknown[] | undefined;
const NO_ATTRIBUTES = Object.freeze({}) as SaxesTagNS["attributes"];

export interface StreamHandler {
  /** The stream header; `defaultNs` is the content namespace declared on it. */
  streamStart(attrs: Attrs, defaultNs: string | undefined): void;
  stanza(el: Element): void;
  streamEnd(): void;
  /** A stream-level error condition (RFC 6120 §4.9.3); the parser stops after reporting it. */
  streamError(condition: string, text: string): void;
}

export class StreamParser {
  #handler: StreamHandler;
  #limits: ParserLimits;
  #sax!: SaxesParser<{ xmlns: true; position: true }>;
  #decoder!: TextDecoder;
  #stack: Element[] = [];
  #uris: string[] = [];
  #contentNs = "";
  #failed = false;
  #started = false;
  /** Position (chars) where the current stanza, or the gap before it, began. */
  #boundary = 0;

  constructor(handler: StreamHandler, limits: ParserLimits) {
    this.#handler = handler;
    this.#limits = limits;
    this.reset();
  }

  /** Starts a fresh stream (after STARTTLS or SASL success, RFC 6120 §4.3.3). */
  reset(): void {
    this.#sax = new SaxesParser({ xmlns: true, position: true });
    this.#decoder = new TextDecoder("utf-8", { fatal: true });
    this.#stack = [];
    this.#uris = [];
    this.#failed = false;
    this.#started = false;
    this.#boundary = 0;
    const sax = this.#sax;
    // A reset from inside a handler (STARTTLS, SASL success) discards the rest of the old stream's
    // chunk: the peer must wait for our answer before sending more (RFC 6120 §5.4.3.3, §6.4.6).
    const live = () => this.#sax === sax;
    // Handlers are set by name rather than with sax.on(): on() stores them under a computed key,
    // which makes V8 turn the parser into a dictionary-mode object (about 3 KiB more per session).
    const h = sax as unknown as SaxInternals;
    // Each parser builds its own table of the same prototype methods: share the first one.
    if (Array.isArray(h.stateTable)) h.stateTable = sharedStateTable ??= h.stateTable;
    h.openTagHandler = (tag) => live() && this.#open(tag);
    h.closeTagHandler = () => live() && this.#close();
    h.textHandler = (t) => live() && this.#text(t);
    h.cdataHandler = (t) => live() && this.#text(t);
    h.doctypeHandler = () => live() && this.#fail("restricted-xml", "DTDs are not allowed");
    h.piHandler = () =>
      live() && this.#fail("restricted-xml", "processing instructions are not allowed");
    h.commentHandler = () => live() && this.#fail("restricted-xml", "comments are not allowed");
    h.errorHandler = (e) => {
      if (!live()) return;
      const msg = e.message;
      // References to entities other than the five predefined ones are restricted XML (§11.1).
      if (/entity/i.test(msg)) this.#fail("restricted-xml", "entity references are not allowed");
      else this.#fail("not-well-formed", msg.split("\n")[0]);
    };
  }

  get failed(): boolean {
    return this.#failed;
  }

  write(chunk: Uint8Array): void {
    if (this.#failed) return;
    let text: string;
    try {
      text = this.#decoder.decode(chunk, { stream: true });
    } catch {
      return this.#fail("not-well-formed", "invalid UTF-8");
    }
    const sax = this.#sax;
    try {
      sax.write(text);
    } catch (e) {
      if (this.#sax !== sax) return;
      if (!this.#failed) this.#fail("not-well-formed", String(e));
    }
    if (!this.#failed && this.#sax.position - this.#boundary > this.#limits.maxStanzaSize) {
      this.#fail("policy-violation", `stanza exceeds ${this.#limits.maxStanzaSize} characters`);
    }
  }

  #fail(condition: string, text: string): void {
    if (this.#failed) return;
    this.#failed = true;
    this.#handler.streamError(condition, text);
  }

  #open(tag: SaxesTagNS): void {
    if (this.#failed) return;
    const depth = this.#stack.length;
    if (!this.#started) {
      this.#started = true;
      if (tag.local !== "stream" || tag.uri !== NS_STREAM) {
        return this.#fail("invalid-namespace", "the root element must be stream:stream");
      }
      this.#contentNs = tag.ns[""] ?? "";
      this.#boundary = this.#sax.position;
      const attrs: Attrs = {};
      for (const k in tag.attributes) {
        const a = tag.attributes[k];
        if (a.prefix !== "xmlns" && a.name !== "xmlns") attrs[a.name] = a.value;
      }
      // saxes keeps the root tag open for the whole session: drop what is no longer needed.
      tag.attributes = NO_ATTRIBUTES;
      this.#uris.push(this.#contentNs);
      this.#stack.push(new Element("stream"));
      return this.#handler.streamStart(attrs, tag.ns[""]);
    }
    if (depth > this.#limits.maxDepth) {
      return this.#fail("policy-violation", `elements nested deeper than ${this.#limits.maxDepth}`);
    }
    const attrs: Attrs = {};
    const parentUri = this.#uris[depth - 1];
    if (tag.uri !== parentUri) attrs.xmlns = tag.uri;
    for (const k in tag.attributes) {
      const a = tag.attributes[k];
      if (a.prefix === "xmlns" || a.name === "xmlns") continue;
      attrs[a.name] = a.value;
      // A namespace-qualified attribute keeps its prefix, so its declaration must travel with it.
      if (a.prefix !== "" && a.prefix !== "xml") attrs["xmlns:" + a.prefix] = a.uri;
    }
    const el = new Element(tag.local, attrs);
    if (depth > 1) this.#stack[depth - 1].children.push(el);
    this.#stack.push(el);
    this.#uris.push(tag.uri);
  }

  #close(): void {
    if (this.#failed) return;
    const el = this.#stack.pop()!;
    this.#uris.pop();
    const depth = this.#stack.length;
    if (depth === 0) {
      this.#failed = true; // nothing may follow the closing stream tag
      return this.#handler.streamEnd();
    }
    if (depth === 1) {
      this.#boundary = this.#sax.position;
      this.#handler.stanza(el);
    }
  }

  #text(t: string): void {
    if (this.#failed) return;
    const depth = this.#stack.length;
    if (depth > 1) this.#stack[depth - 1].children.push(t);
    else if (depth === 1 && t.trim() !== "") {
      this.#fail("bad-format", "text is not allowed between stanzas");
    }
  }
}
