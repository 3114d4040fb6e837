// The server name (SNI, RFC 6066 §3) in a TLS ClientHello, read from the first bytes a direct-TLS
// client sends. The listener picks the host's certificate with it before handing the connection
// to TLS: Deno's TLSSocket with an SNICallback kept ~6 KiB for every connection that closed before
// finishing its handshake.

/** A TLS record's header: content type (1), version (2), body length (2) (RFC 8446 §5.1). */
export const RECORD_HEADER_BYTES = 5;

/** The longest record body a peer may send (2^14, RFC 8446 §5.1). */
const MAX_RECORD_BODY = 16_384;

/**
 * The bytes of the record that `header` (its first RECORD_HEADER_BYTES) starts, header included;
 * undefined when it is not a handshake record or claims more than a record may hold (TLS will
 * then fail on its own).
 */
export function handshakeRecordBytes(header: Uint8Array): number | undefined {
  const body = header[3] << 8 | header[4];
  if (header[0] !== 0x16 || body > MAX_RECORD_BODY) return undefined;
  return RECORD_HEADER_BYTES + body;
}

/**
 * The server name the ClientHello in `data` (a whole handshake record, as measured by
 * handshakeRecordBytes) asks for: undefined when it names none or is not a ClientHello.
 */
export function helloServerName(data: Uint8Array): string | undefined {
  const end = handshakeRecordBytes(data);
  if (end === undefined || data.length < end) return undefined;
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
