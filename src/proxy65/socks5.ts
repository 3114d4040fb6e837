// The SOCKS5 handshake (RFC 1928) as XEP-0065 uses it: the "no authentication" method, then
// CONNECT to a domain-name address that is the stream's hash, port 0. Bad bytes get the SOCKS5
// reply code that names the problem, and the connection is closed.

export const REPLY = {
  succeeded: 0x00,
  notAllowed: 0x02,
  hostUnreachable: 0x04,
  commandNotSupported: 0x07,
  addressTypeNotSupported: 0x08,
} as const;

export type Step =
  | { kind: "more" }
  /** Send `bytes`; close afterwards when `close` is set. */
  | { kind: "reply"; bytes: Uint8Array; close: boolean }
  /** Handshake done: the client asks for the stream `hash`; `rest` came after the request. */
  | { kind: "connect"; hash: string; rest: Uint8Array };

const HASH = /^[0-9a-f]{40}$/;

/** The reply to a CONNECT request, echoing the requested address. */
export function connectReply(code: number, hash = ""): Uint8Array {
  const addr = new TextEncoder().encode(hash);
  return Uint8Array.of(0x05, code, 0x00, 0x03, addr.length, ...addr, 0x00, 0x00);
}

export class Socks5Handshake {
  #buf = new Uint8Array(0);
  #stage: "greeting" | "request" | "done" = "greeting";

  push(chunk: Uint8Array): Step {
    const merged = new Uint8Array(this.#buf.length + chunk.length);
    merged.set(this.#buf);
    merged.set(chunk, this.#buf.length);
    this.#buf = merged;
    return this.#stage === "greeting" ? this.#greeting() : this.#request();
  }

  #greeting(): Step {
    const b = this.#buf;
    if (b.length >= 1 && b[0] !== 0x05) {
      return { kind: "reply", bytes: new Uint8Array(0), close: true };
    }
    if (b.length < 2 || b.length < 2 + b[1]) return { kind: "more" };
    const methods = b.subarray(2, 2 + b[1]);
    this.#buf = b.slice(2 + b[1]);
    if (!methods.includes(0x00)) {
      return { kind: "reply", bytes: Uint8Array.of(0x05, 0xff), close: true };
    }
    this.#stage = "request";
    // The request may already be here; answer the greeting first, the request on the next push.
    return { kind: "reply", bytes: Uint8Array.of(0x05, 0x00), close: false };
  }

  /** Call after the greeting reply has been sent, to handle bytes that came with the greeting. */
  pending(): Step {
    return this.#stage === "request" && this.#buf.length ? this.#request() : { kind: "more" };
  }

  #request(): Step {
    const b = this.#buf;
    if (b.length < 5) return { kind: "more" };
    if (b[0] !== 0x05) return { kind: "reply", bytes: new Uint8Array(0), close: true };
    if (b[1] !== 0x01) {
      return { kind: "reply", bytes: connectReply(REPLY.commandNotSupported), close: true };
    }
    if (b[3] !== 0x03) {
      return { kind: "reply", bytes: connectReply(REPLY.addressTypeNotSupported), close: true };
    }
    const end = 5 + b[4] + 2;
    if (b.length < end) return { kind: "more" };
    const hash = new TextDecoder().decode(b.subarray(5, 5 + b[4])).toLowerCase();
    this.#stage = "done";
    if (!HASH.test(hash)) {
      return { kind: "reply", bytes: connectReply(REPLY.hostUnreachable), close: true };
    }
    return { kind: "connect", hash, rest: b.slice(end) };
  }
}
