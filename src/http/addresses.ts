// The client's address behind a trusted reverse proxy: the listener's forwarded header
// (`forwarded_header`: X-Forwarded-For, or RFC 7239 Forwarded; only that one, never the other,
// which a client could send through a proxy that passes it on) is believed only from a proxy in
// the list, and then its rightmost hop that is not itself a trusted proxy is the client.
import ipaddr from "ipaddr.js";
import type { AddressList } from "../core/address_list.ts";

/**
 * The client's address: the peer's, or behind trusted proxies the rightmost forwarded address
 * that is not one of them (a client cannot forge what its own proxy appends).
 */
/** Which header a listener believes from its trusted proxies. */
export type ForwardedHeader = "x-forwarded-for" | "forwarded";

export function clientAddress(
  peer: string,
  headers: Headers,
  trusted: AddressList,
  header: ForwardedHeader = "x-forwarded-for",
): string {
  if (trusted.empty || !trusted.has(peer)) return peer;
  const hops = header === "forwarded" ? forwardedFor(headers) : xForwardedFor(headers);
  for (let i = hops.length - 1; i >= 0; i--) {
    if (!ipaddr.isValid(hops[i])) return peer;
    if (!trusted.has(hops[i])) return ipaddr.process(hops[i]).toString();
  }
  return hops.length > 0 ? ipaddr.process(hops[0]).toString() : peer;
}

/** RFC 7239's `for=` chain, oldest first. */
function forwardedFor(headers: Headers): string[] {
  const out: string[] = [];
  for (const part of (headers.get("forwarded") ?? "").split(",")) {
    const m = /(?:^|;)\s*for=("?)\[?([^\]";]+)\]?(?::\d+)?\1/i.exec(part.trim());
    if (m) out.push(m[2].replace(/^([\d.]+):\d+$/, "$1"));
  }
  return out;
}

function xForwardedFor(headers: Headers): string[] {
  return (headers.get("x-forwarded-for") ?? "").split(",").map((s) => s.trim()).filter(Boolean);
}
