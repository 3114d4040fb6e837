// Input a transport cannot stop its peer from sending (a WebSocket, BOSH requests): while the
// stream is paused (rate limiting) it is held here, and a peer sending more than `max` characters
// meanwhile is refused with policy-violation.
import type { TransportEvents } from "../stream/transport.ts";

export class HeldInput {
  #paused = false;
  #held: string[] = [];
  #bytes = 0;

  constructor(readonly max: number, readonly events: () => TransportEvents) {}

  /** Hands `chunk` to the stream, or holds it while the stream is paused. */
  pass(chunk: string): void {
    if (!this.#paused) return this.events().data(chunk);
    this.#bytes += chunk.length;
    if (this.#bytes > this.max) {
      return this.events().refuse("policy-violation", "sending faster than allowed");
    }
    this.#held.push(chunk);
  }

  pause(): void {
    this.#paused = true;
  }

  /** Hands over what was held, until the stream pauses again or the transport is `gone`. */
  resume(gone: () => boolean): void {
    this.#paused = false;
    while (!this.#paused && this.#held.length > 0 && !gone()) {
      const chunk = this.#held.shift()!;
      this.#bytes -= chunk.length;
      this.events().data(chunk);
    }
  }

  clear(): void {
    this.#held = [];
    this.#bytes = 0;
  }
}
