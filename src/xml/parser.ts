// Incremental XMPP stream parser on saxes: bytes in (any chunking), stanzas out.
// Enforces RFC 6120 §11 restricted XML and the configured size/depth limits while parsing, so an
// oversized or hostile stanza is refused before it is buffered whole. The first error stops the
// parser at once: nothing after it, not even the rest of the chunk, is parsed.
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
 * its table of state methods, and what namespace resolution reads (see `reset`). */
interface SaxInternals {
  stateTable: unknown[];
  /** saxes' state: S_TEXT (13) between markup. */
  state: number;
  topNS: Record<string, string | undefined>;
  resolve(prefix: string): string | undefined;
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
/** Prefixes bound in every document (Namespaces in XML §3). */
const PREDEFINED = new Map([
  ["xml", "http://www.w3.org/XML/1998/namespace"],
  ["xmlns", "http://www.w3.org/2000/xmlns/"],
]);
/** saxes' state between markup (saxes 6.0.0). */
const S_TEXT = 13;
/** Thrown through saxes to abandon the chunk it is parsing (saxes has no way to stop). */
const STOP = Symbol("stop parsing");
/** A handler of a parser replaced by reset(): nothing more of the old stream is parsed. */
function stale(): never {
  throw STOP;
}

/**
 * saxes' error messages (6.0.0) that RFC 6120 §11.1 classes as restricted XML rather than
 * not-well-formed, or that need a clearer text.
 */
const SAX_ERRORS: [suffix: string, condition: string, text: string][] = [
  ["undefined entity.", "restricted-xml", "entity references are not allowed"],
  ["inappropriately located doctype declaration.", "restricted-xml", "DTDs are not allowed"],
  [
    "malformed character entity.",
    "not-well-formed",
    "character reference to a forbidden character",
  ],
];

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
  /** Two slots per open element: its namespace, then the default namespace in its scope. */
  #ns: string[] = [];
  /** The stream header's declarations (saxes keeps the root tag for the session anyway). */
  #rootNs: Record<string, string> | undefined;
  /** Each prefix bound inside the current stanza, to its innermost binding. Made on first use:
   * most clients declare only default namespaces. */
  #prefixes: Map<string, string> | undefined;
  /** (depth, prefix, binding it hid) for each binding in #prefixes, undone when its element
   * closes. */
  #undo: (number | string | undefined)[] | undefined;
  #failed = false;
  /** Characters handed to saxes in this stream. (After write() returns, saxes' `position` counts
   * the last chunk twice; it is right only inside a handler.) */
  #read = 0;
  /** Where the current stanza began (its "<"), or where the gap before the next one began. */
  #start = 0;

  constructor(handler: StreamHandler, limits: ParserLimits) {
    this.#handler = handler;
    this.#limits = limits;
    this.reset();
  }

  /** Starts a fresh stream (after STARTTLS or SASL success, RFC 6120 §4.3.3). */
  reset(): void {
    const sax = this.#sax = new SaxesParser({ xmlns: true, position: true });
    this.#decoder = new TextDecoder("utf-8", { fatal: true });
    this.#stack = [];
    const ns: string[] = this.#ns = [];
    this.#rootNs = this.#prefixes = this.#undo = undefined;
    this.#failed = false;
    this.#read = 0;
    this.#start = 0;
    // Handlers are set by name rather than with sax.on(): on() stores them under a computed key,
    // which makes V8 turn the parser into a dictionary-mode object (about 3 KiB more per session).
    const h = sax as unknown as SaxInternals;
    // Each parser builds its own table of the same prototype methods: share the first one.
    if (Array.isArray(h.stateTable)) h.stateTable = sharedStateTable ??= h.stateTable;
    // saxes resolves a prefix by walking its whole stack of open tags, for every element: deep
    // nesting made that quadratic. Ours is one lookup. `topNS` holds the declarations of the tag
    // being opened, the only ones not yet in our scope.
    h.resolve = (prefix) =>
      h.topNS[prefix] ?? (prefix === "" ? ns[ns.length - 1] : this.#resolvePrefix(prefix));
    // A reset from inside a handler (STARTTLS, SASL success) discards the rest of the old stream's
    // chunk: the peer must wait for our answer before sending more (RFC 6120 §5.4.3.3, §6.4.6).
    h.openTagHandler = (tag) => this.#sax === sax ? this.#open(tag) : stale();
    h.closeTagHandler = () => this.#sax === sax ? this.#close() : stale();
    h.textHandler = (t) => this.#sax === sax ? this.#text(t) : stale();
    h.cdataHandler = (t) => this.#sax === sax ? this.#cdata(t) : stale();
    h.doctypeHandler = () => this.#refuse(sax, "restricted-xml", "DTDs are not allowed");
    h.piHandler = () =>
      this.#refuse(sax, "restricted-xml", "processing instructions are not allowed");
    h.commentHandler = () => this.#refuse(sax, "restricted-xml", "comments are not allowed");
    h.errorHandler = (e) => {
      const msg = e.message;
      const known = SAX_ERRORS.find(([suffix]) => msg.endsWith(suffix));
      this.#refuse(sax, known?.[1] ?? "not-well-formed", known?.[2] ?? msg.split("\n")[0]);
    };
  }

  /**
   * Whether the parser stands between stanzas: no element open, no tag half read (the next text
   * starts a new stanza).
   */
  get betweenStanzas(): boolean {
    return !this.#failed && this.#stack.length === 1 &&
      (this.#sax as unknown as SaxInternals).state === S_TEXT;
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
    this.writeText(text);
  }

  /** Parses already decoded text (stored stanzas). */
  writeText(text: string): void {
    if (this.#failed) return;
    const sax = this.#sax;
    this.#read += text.length;
    try {
      sax.write(text);
    } catch (e) {
      if (e === STOP) return;
      this.#failed = true; // a handler's bug: its caller reports it
      throw e;
    }
    // What has arrived of the current stanza (or of the gap before the next) is already too much.
    if (!this.#failed && this.#read - this.#start > this.#limits.maxStanzaSize) {
      this.#fail("policy-violation", `stanza exceeds ${this.#limits.maxStanzaSize} characters`);
    }
  }

  #fail(condition: string, text: string): void {
    if (this.#failed) return;
    this.#failed = true;
    this.#handler.streamError(condition, text);
  }

  /** Reports the error and abandons the chunk saxes is parsing (called only from its handlers). */
  #stop(condition: string, text: string): never {
    this.#fail(condition, text);
    throw STOP;
  }

  #refuse(sax: SaxesParser, condition: string, text: string): never {
    return this.#sax === sax ? this.#stop(condition, text) : stale();
  }

  #resolvePrefix(prefix: string): string | undefined {
    return this.#prefixes?.get(prefix) ?? this.#rootNs?.[prefix] ?? PREDEFINED.get(prefix);
  }

  /** Enters a prefix binding declared by the element opening at `depth`. */
  #bind(depth: number, prefix: string, uri: string): void {
    const prefixes = this.#prefixes ??= new Map();
    (this.#undo ??= []).push(depth, prefix, prefixes.get(prefix));
    prefixes.set(prefix, uri);
  }

  /** Leaves the prefix bindings of the element closing at `depth`. */
  #unbind(depth: number, undo: (number | string | undefined)[]): void {
    const prefixes = this.#prefixes!;
    while (undo.length !== 0 && undo[undo.length - 3] === depth) {
      const hidden = undo.pop() as string | undefined;
      const prefix = undo.pop() as string;
      undo.length--;
      if (hidden === undefined) prefixes.delete(prefix);
      else prefixes.set(prefix, hidden);
    }
  }

  #open(tag: SaxesTagNS): void {
    const depth = this.#stack.length;
    if (depth === 0) return this.#openStream(tag);
    if (depth > this.#limits.maxDepth) {
      this.#stop("policy-violation", `elements nested deeper than ${this.#limits.maxDepth}`);
    }
    const ns = this.#ns;
    const attrs: Attrs = {};
    if (tag.uri !== ns[2 * depth - 2]) attrs.xmlns = tag.uri;
    let defaultNs = ns[2 * depth - 1];
    for (const k in tag.attributes) {
      const a = tag.attributes[k];
      if (a.name === "xmlns") {
        defaultNs = tag.ns[""];
        continue;
      }
      attrs[a.name] = a.value;
      const prefix = a.prefix;
      if (prefix === "" || prefix === "xml") continue;
      // Prefix declarations stay where they were made (a prefix may be used in content too), and
      // a namespace-qualified attribute keeps its prefix, so its declaration travels with it.
      if (prefix === "xmlns") this.#bind(depth, a.local, tag.ns[a.local]);
      else attrs["xmlns:" + prefix] = a.uri;
    }
    const el = new Element(tag.local, attrs);
    if (depth > 1) this.#stack[depth - 1].children.push(el);
    this.#stack.push(el);
    ns.push(tag.uri, defaultNs);
  }

  #openStream(tag: SaxesTagNS): void {
    if (tag.local !== "stream" || tag.uri !== NS_STREAM) {
      this.#stop("invalid-namespace", "the root element must be stream:stream");
    }
    const contentNs = tag.ns[""] ?? "";
    this.#rootNs = tag.ns;
    this.#start = this.#sax.position;
    const attrs: Attrs = {};
    for (const k in tag.attributes) {
      const a = tag.attributes[k];
      if (a.prefix !== "xmlns" && a.name !== "xmlns") attrs[a.name] = a.value;
    }
    // saxes keeps the root tag open for the whole session: drop what is no longer needed.
    tag.attributes = NO_ATTRIBUTES;
    this.#stack.push(new Element("stream"));
    this.#ns.push(contentNs, contentNs);
    this.#handler.streamStart(attrs, tag.ns[""]);
  }

  #close(): void {
    const el = this.#stack.pop()!;
    this.#ns.length -= 2;
    const depth = this.#stack.length;
    const undo = this.#undo;
    if (undo !== undefined) this.#unbind(depth, undo);
    if (depth === 1) {
      const end = this.#sax.position;
      if (end - this.#start > this.#limits.maxStanzaSize) {
        this.#stop("policy-violation", `stanza exceeds ${this.#limits.maxStanzaSize} characters`);
      }
      this.#start = end;
      this.#handler.stanza(el);
    } else if (depth === 0) {
      this.#failed = true; // nothing may follow the closing stream tag
      this.#handler.streamEnd();
      throw STOP;
    }
  }

  #text(t: string): void {
    const depth = this.#stack.length;
    if (depth > 1) this.#stack[depth - 1].children.push(t);
    else if (depth === 1) {
      if (t.trim() !== "") this.#stop("bad-format", "text is not allowed between stanzas");
      // Text is reported at the "<" that ends it: the next stanza starts there.
      this.#start = this.#sax.position - 1;
    }
  }

  #cdata(t: string): void {
    const depth = this.#stack.length;
    if (depth > 1) this.#stack[depth - 1].children.push(t);
    else if (depth === 1) this.#stop("bad-format", "character data is not allowed between stanzas");
  }
}
