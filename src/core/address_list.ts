// Address lists in CIDR notation (`trusted_proxies`, `metrics.allow`), parsed and matched with
// npm:ipaddr.js (IPv4, IPv6, IPv4-mapped IPv6 alike; what Express's proxy-addr uses).
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
