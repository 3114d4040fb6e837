// Direct TLS on an accepted socket, with the certificate for the name the client asks for (SNI):
// the ClientHello is read first, then the connection goes to TLS with that host's certificate
// (Deno's TLSSocket with an SNICallback kept ~6 KiB for every connection that closed before
// finishing its handshake). The TLS handshake deadline covers both. Used by the XMPP listeners
// (direct TLS, XEP-0368) and the https listener.
import type net from "node:net";
import tls from "node:tls";
import { Buffer } from "node:buffer";
import { tlsDeadline } from "./tls_deadline.ts";
import { handshakeRecordBytes, helloServerName, RECORD_HEADER_BYTES } from "../tls/client_hello.ts";
import { logger } from "../log/logger.ts";

const log = logger("listener");

/** Reads `socket`'s ClientHello, then calls `secured` with its TLS socket (not yet handshaken). */
export function acceptTls(
  socket: net.Socket,
  context: (serverName: string | undefined) => tls.SecureContext,
  handshakeMs: number,
  secured: (secure: tls.TLSSocket) => void,
): void {
  const deadline = tlsDeadline(socket, handshakeMs);
  // The record header says how many bytes the ClientHello takes: they are copied into one
  // buffer of that size and parsed once, whatever pieces they come in (gathering and re-parsing
  // everything on each piece made a trickling peer cost quadratic time and memory).
  let head: Uint8Array[] = [];
  let headBytes = 0;
  let record: Buffer | undefined;
  let filled = 0;
  const handOff = (data: Uint8Array, isHandshake: boolean) => {
    socket.off("data", onData);
    socket.pause();
    socket.unshift(data);
    const name = isHandshake ? helloServerName(data) : undefined;
    const secure = new tls.TLSSocket(socket, { isServer: true, secureContext: context(name) });
    deadline(secure);
    secured(secure);
  };
  const onData = (chunk: Uint8Array) => {
    if (!record) {
      head.push(chunk);
      headBytes += chunk.length;
      if (headBytes < RECORD_HEADER_BYTES) return;
      const start = head.length === 1 ? chunk : Buffer.concat(head);
      head = [];
      const need = handshakeRecordBytes(start);
      if (need === undefined || start.length >= need) return handOff(start, need !== undefined);
      record = Buffer.allocUnsafe(need);
      record.set(start);
      filled = start.length;
      return;
    }
    const n = Math.min(chunk.length, record.length - filled);
    record.set(chunk.subarray(0, n), filled);
    filled += n;
    if (filled < record.length) return;
    handOff(n < chunk.length ? Buffer.concat([record, chunk.subarray(n)]) : record, true);
  };
  socket.on("data", onData);
  socket.on("error", (e) => log.debug("socket error before TLS: {error}", { error: e.message }));
}
