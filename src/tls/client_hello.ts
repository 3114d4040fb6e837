// The server name (SNI, RFC 6066 §3) in a TLS ClientHello, read from the first bytes a direct-TLS
// client sends. The listener picks the host's certificate with it before handing the connection
// to TLS: Deno's TLSSocket with an SNICallback kept ~6 KiB for every connection that closed before
// finishing its handshake.

/** Bytes we wait for at most: a TLS record's header and its largest body (RFC 8446 §5.1). */
export const MAX_HELLO_BYTES = 5 + 16_384;

/**
 * The server name the ClientHello in `data` asks for: undefined when it names none or `data` is
 * not a ClientHello (TLS will then fail on its own), null while the record is incomplete.
 */
export function helloServerName(data: Uint8Array): string | undefined | null {
  if (data.length < 5) return null;
  if (data[0] !== 0x16) return undefined; // not a handshake record
  const end = 5 + (data[3] << 8 | data[4]);
  if (data.length < end) return null;
  const v = new DataView(data.buffer, data.byteOffset, end);
  // Handshake header (4), client version (2), random (32).
  let at = 5;
  if (data[at] !== 0x01) return undefined; // not a ClientHello
  at += 4 + 2 + 32;
  const skip = (lengthBytes: 1 | 2) => {
    if (at + lengthBytes > end) return false;
    at += lengthBytes + (lengthBytes === 1 ? v.getUint8(at) : v.getUint16(at));
    return at <= end;
  };
  // Session id, cipher suites, compression methods, then the extensions' total length.
  if (!skip(1) || !skip(2) || !skip(1) || at + 2 > end) return undefined;
  at += 2;
  while (at + 4 <= end) {
    const type = v.getUint16(at);
    const len = v.getUint16(at + 2);
    at += 4;
    if (at + len > end) return undefined;
    // server_name: list length (2), name type (1, 0 = host_name), name length (2), name.
    if (type === 0 && len >= 5 && data[at + 2] === 0) {
      const nameLen = v.getUint16(at + 3);
      if (at + 5 + nameLen > end) return undefined;
      return new TextDecoder().decode(data.subarray(at + 5, at + 5 + nameLen));
    }
    at += len;
  }
  return undefined;
}
