// Frames a link must not lose (stanzas for sessions or component instances on a peer): the sender
// keeps each frame's text until the peer says it handled it, so what a dying link may have lost
// can be handled again; the receiver acknowledges all that came within ACK_DELAY_MS of the first
// at once (an acknowledgement per batch of frames cost the sender more in reading them, and in
// garbage, than the stanzas themselves). Frames of that window may be handled twice when a link
// dies after they arrived.
import { StanzaDecoder } from "./wire.ts";

const ACK_DELAY_MS = 10;

export class Acks {
  /** One parser per peer for the stanzas it sends. */
  readonly decoder = new StanzaDecoder();
  /**
   * Frames sent and not acknowledged yet, oldest first ("" for one not to be handled again). Kept
   * as the text sent: one string per stanza, not its tree, so frames in flight cost the collector
   * little.
   */
  #unacked: string[] = [];
  #head = 0;
  #sent = 0;
  #received = 0;
  #ackQueued = false;

  /** Keeps the text of a frame just sent. */
  sent(payload: string): void {
    this.#sent++;
    this.#unacked.push(payload);
  }

  /** The peer has handled the first `n` frames sent to it. */
  acked(n: number): void {
    const pending = this.#unacked.length - this.#head;
    this.#head += Math.max(0, Math.min(pending, n - (this.#sent - pending)));
    if (this.#head === this.#unacked.length) {
      this.#unacked.length = 0;
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > this.#unacked.length) {
      this.#unacked = this.#unacked.slice(this.#head);
      this.#head = 0;
    }
  }

  /**
   * Takes out the frames not acknowledged yet that `matches` (they are not handled again if the
   * link dies): their texts.
   */
  take(matches: (payload: string) => boolean): string[] {
    const out: string[] = [];
    for (let i = this.#head; i < this.#unacked.length; i++) {
      const p = this.#unacked[i];
      if (p !== "" && matches(p)) {
        out.push(p);
        this.#unacked[i] = "";
      }
    }
    return out;
  }

  /** What the peer may not have handled. */
  unacked(): string[] {
    return this.#unacked.slice(this.#head).filter((p) => p !== "");
  }

  /**
   * The frames received from the peer so far: what an acknowledgement sent now says (one may go
   * inside another frame to the peer).
   */
  get receivedCount(): number {
    return this.#received;
  }

  /**
   * Every frame sent so far counts as handled: this node knows the peer got them, though their
   * acknowledgements may never be read (it woke from a stall: link.ts drops what came meanwhile).
   */
  assumeAcked(): void {
    this.acked(this.#sent);
  }

  /** Counts a frame received; `ack` is called with the count a little later, once for many. */
  received(ack: (count: number) => void): void {
    this.#received++;
    if (this.#ackQueued) return;
    this.#ackQueued = true;
    setTimeout(() => {
      this.#ackQueued = false;
      ack(this.#received);
    }, ACK_DELAY_MS);
  }
}
