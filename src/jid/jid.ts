// JIDs (RFC 7622): parsed once, prepared, compared by their canonical string forms.
import { prepDomain, prepLocal, prepResource } from "./precis.ts";

export class Jid {
  readonly local: string;
  readonly domain: string;
  readonly resource: string;
  /** Canonical bare form: local@domain or domain. */
  readonly bare: string;
  /** Canonical full form (equals `bare` when there is no resource). */
  readonly full: string;

  constructor(local: string, domain: string, resource = "") {
    this.local = local;
    this.domain = domain;
    this.resource = resource;
    this.bare = local ? local + "@" + domain : domain;
    this.full = resource ? this.bare + "/" + resource : this.bare;
  }

  get isBare(): boolean {
    return this.resource === "";
  }

  /** True for a server or service address (no localpart). */
  get isDomain(): boolean {
    return this.local === "";
  }

  toBare(): Jid {
    return this.resource ? new Jid(this.local, this.domain) : this;
  }

  withResource(resource: string): Jid {
    return new Jid(this.local, this.domain, resource);
  }

  toString(): string {
    return this.full;
  }
}

// Parsing and PRECIS preparation show up on the routing hot path; most JIDs repeat.
const cache = new Map<string, Jid | null>();
const CACHE_MAX = 50_000;

/** Parses and prepares a JID; null when it is not a valid JID (answer with jid-malformed). */
export function parseJid(s: string): Jid | null {
  const hit = cache.get(s);
  if (hit !== undefined) return hit;
  const jid = prepare(s);
  if (cache.size >= CACHE_MAX) cache.clear();
  cache.set(s, jid);
  return jid;
}

function prepare(s: string): Jid | null {
  const slash = s.indexOf("/");
  const head = slash < 0 ? s : s.slice(0, slash);
  const at = head.indexOf("@");
  let local = "";
  if (at >= 0) {
    const l = prepLocal(head.slice(0, at));
    if (l === null) return null;
    local = l;
  }
  const domain = prepDomain(at >= 0 ? head.slice(at + 1) : head);
  if (domain === null) return null;
  let resource = "";
  if (slash >= 0) {
    const r = prepResource(s.slice(slash + 1));
    if (r === null) return null;
    resource = r;
  }
  return new Jid(local, domain, resource);
}

/** Parses a JID that must be valid (configuration, internal addresses). */
export function jid(s: string): Jid {
  const j = parseJid(s);
  if (!j) throw new Error(`invalid JID: ${s}`);
  return j;
}
