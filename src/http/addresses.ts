// Address lists in CIDR notation (`trusted_proxies`, `metrics.allow`), and the client's address
// behind a trusted reverse proxy: X-Forwarded-For (or RFC 7239 Forwarded) is believed only from a
// proxy in the list, and then its rightmost hop that is not itself a trusted proxy is the client.
// npm:ipaddr.js parses and matches (IPv4, IPv6, IPv4-mapped IPv6 alike); it is what Express's
// proxy-addr uses.
import ipaddr from "ipaddr.js";

type Range = [ipaddr.IPv4 | ipaddr.IPv6, number];

export class AddressList {
  readonly #ranges: Range[];

  /** Throws on an entry that is not an address or CIDR (the configuration check reports it). */
  constructor(entries: string[]) {
    this.#ranges = entries.map(parseRange);
  }

  get empty(): boolean {
    return this.#ranges.length === 0;
  }

  has(address: string): boolean {
    if (!ipaddr.isValid(address)) return false;
    const ip = ipaddr.process(address);
    return this.#ranges.some(([net, bits]) => ip.kind() === net.kind() && ip.match(net, bits));
  }
}

/** An address or CIDR range; an error names the entry. */
export function parseRange(entry: string): Range {
  try {
    if (entry.includes("/")) {
      const [net, bits] = ipaddr.parseCIDR(entry);
      return [net.kind() === "ipv6" ? ipaddr.process(net.toString()) : net, bits] as Range;
    }
    const ip = ipaddr.process(entry);
    return [ip, ip.kind() === "ipv4" ? 32 : 128];
  } catch {
    throw new Error(`${entry} is not an IP address or CIDR range`);
  }
}

/**
 * The client's address: the peer's, or behind trusted proxies the rightmost forwarded address
 * that is not one of them (a client cannot forge what its own proxy appends).
 */
export function clientAddress(peer: string, headers: Headers, trusted: AddressList): string {
  if (trusted.empty || !trusted.has(peer)) return peer;
  const hops = forwardedFor(headers);
  for (let i = hops.length - 1; i >= 0; i--) {
    if (!ipaddr.isValid(hops[i])) return peer;
    if (!trusted.has(hops[i])) return ipaddr.process(hops[i]).toString();
  }
  return hops.length > 0 ? ipaddr.process(hops[0]).toString() : peer;
}

/** The forwarded-for chain, oldest first: RFC 7239 `Forwarded` if present, else X-Forwarded-For. */
function forwardedFor(headers: Headers): string[] {
  const forwarded = headers.get("forwarded");
  if (forwarded) {
    const out: string[] = [];
    for (const part of forwarded.split(",")) {
      const m = /(?:^|;)\s*for=("?)\[?([^\]";]+)\]?(?::\d+)?\1/i.exec(part.trim());
      if (m) out.push(m[2].replace(/^([\d.]+):\d+$/, "$1"));
    }
    return out;
  }
  return (headers.get("x-forwarded-for") ?? "").split(",").map((s) => s.trim()).filter(Boolean);
}
