// Framing of the node-to-node protocol: each frame is a 4-byte big-endian length (of what
// follows), a 1-byte type and the payload. Types below FIRST_APP_TYPE belong to the link itself;
// the others are carried for the layers above (session records, stanzas).

export const HEADER_BYTES = 5;

/** Link frames: HELLO and ACCEPT open a link, PING/PONG are its heartbeat and RTT probe. */
export const HELLO = 1;
export const ACCEPT = 2;
export const PING = 3;
export const PONG = 4;
export const FIRST_APP_TYPE = 16;

/** Default largest payload; a larger frame closes the link (both when sent and received). */
export const MAX_FRAME_BYTES = 8 << 20;

const encoder = new TextEncoder();

/** Splits received bytes into frames, across any chunking, without copying complete frames. */
export class FrameReader {
  #buf = new Uint8Array(0);
  #len = 0;

  constructor(
    readonly maxFrame: number,
    /** Called per frame; `payload` is only valid during the call. Returns false to stop. */
    readonly onFrame: (type: number, payload: Uint8Array) => boolean,
  ) {}

  /** Consumes a chunk; returns why the stream is malformed, or undefined. */
  push(chunk: Uint8Array): string | undefined {
    let data = chunk;
    let end = chunk.length;
    if (this.#len > 0) {
      this.#reserve(this.#len + chunk.length);
      this.#buf.set(chunk, this.#len);
      data = this.#buf;
      end = this.#len += chunk.length;
    }
    let off = 0;
    while (end - off >= HEADER_BYTES) {
      const size = (data[off] << 24 | data[off + 1] << 16 | data[off + 2] << 8 | data[off + 3]) >>>
        0;
      if (size === 0) return "a frame without a type";
      if (size - 1 > this.maxFrame) {
        return `a frame of ${size - 1} bytes (at most ${this.maxFrame})`;
      }
      if (end - off < 4 + size) break;
      const type = data[off + 4];
      const payload = data.subarray(off + HEADER_BYTES, off + 4 + size);
      off += 4 + size;
      if (!this.onFrame(type, payload)) return;
    }
    // Keep the partial frame, if any, for the next chunk.
    const rest = end - off;
    if (data === this.#buf) {
      this.#buf.copyWithin(0, off, end);
    } else if (rest > 0) {
      this.#reserve(rest);
      this.#buf.set(data.subarray(off, end));
    }
    this.#len = rest;
  }

  #reserve(n: number): void {
    if (this.#buf.length >= n) return;
    const grown = new Uint8Array(Math.max(n, this.#buf.length * 2, 4096));
    grown.set(this.#buf.subarray(0, this.#len));
    this.#buf = grown;
  }
}

/** Collects frames into one buffer so that all frames queued in a task leave in one write. */
export class FrameWriter {
  #out = new Uint8Array(64 * 1024);
  #view = new DataView(this.#out.buffer);
  #len = 0;

  constructor(readonly maxFrame: number) {}

  /** Bytes queued and not yet taken. */
  get length(): number {
    return this.#len;
  }

  /** Appends one frame; a string payload is encoded straight into the buffer. */
  frame(type: number, payload: Uint8Array | string): void {
    const start = this.#len;
    const at = start + HEADER_BYTES;
    let size: number;
    if (typeof payload === "string") {
      this.#reserve(at + payload.length * 3);
      size = encoder.encodeInto(payload, this.#out.subarray(at)).written;
    } else {
      this.#reserve(at + payload.length);
      this.#out.set(payload, at);
      size = payload.length;
    }
    if (size > this.maxFrame) {
      throw new RangeError(`a frame of ${size} bytes exceeds the limit of ${this.maxFrame}`);
    }
    this.#view.setUint32(start, size + 1);
    this.#out[start + 4] = type;
    this.#len = at + size;
  }

  /** Appends a frame whose payload is one float64 (heartbeat timestamps). */
  float(type: number, value: number): void {
    this.#reserve(this.#len + HEADER_BYTES + 8);
    this.#view.setUint32(this.#len, 9);
    this.#out[this.#len + 4] = type;
    this.#view.setFloat64(this.#len + HEADER_BYTES, value);
    this.#len += HEADER_BYTES + 8;
  }

  /** The queued bytes, as a copy the socket may keep; the writer starts empty again. */
  take(): Uint8Array {
    const out = this.#out.slice(0, this.#len);
    this.#len = 0;
    return out;
  }

  #reserve(n: number): void {
    if (this.#out.length >= n) return;
    const grown = new Uint8Array(Math.max(n, this.#out.length * 2));
    grown.set(this.#out.subarray(0, this.#len));
    this.#out = grown;
    this.#view = new DataView(grown.buffer);
  }
}

/** The float64 payload of a PING or PONG, or NaN when it is not one. */
export function readFloat(payload: Uint8Array): number {
  if (payload.length !== 8) return NaN;
  return new DataView(payload.buffer, payload.byteOffset, 8).getFloat64(0);
}
