// The counters and queue of XEP-0198 stream management for one session: how many stanzas the
// server handled from the client (the `h` it reports), how many it sent, and those sent but not
// acknowledged yet, kept as the text written so they can be sent again on resumption or
// handled as undelivered when the session ends. Counters wrap at 2^32 as the XEP says.
// Nothing here does I/O; the session (client_session.ts) and its stream act on it.

const WRAP = 2 ** 32;

/** Stanza ids of client stanzas remembered for dropping resent duplicates (cluster takeover). */
const REMEMBERED_IDS = 256;
/**
 * Acknowledged stanzas a session in a cluster keeps a while: another node resending what a dead
 * node had already handed to this session is recognised (and not given twice) for as long.
 */
export const KEEP_ACKED = 64;

/**
 * The stanza's text as one flat string: serialization builds it by concatenation, and kept so
 * (until acknowledged) it would cost the collector about four times its size. Not for a text
 * normalization would change.
 */
function flat(xml: string): string {
  const f = xml.normalize();
  return f === xml ? f : xml;
}

/** What a resumable session carries to the node where it resumes (and to its replica). */
export interface SmState {
  /** The resumption id (`previd`); null when the client did not ask for resumption. */
  id: string | null;
  /** Milliseconds the session waits for a resumption once its connection is gone. */
  timeoutMs: number;
  handled: number;
  acked: number;
  /** Sent and not acknowledged, oldest first (serialized stanzas). */
  unacked: string[];
  /** The last ones acknowledged, oldest first: recognised if a dead node's peer resends them. */
  recent: string[];
  /** Ids of the last client stanzas handled, with the value of `handled` after each. */
  seen: [string, number][];
}

export class StreamManagement {
  /** Stanzas handled from the client since <enable/>, mod 2^32. */
  handled: number;
  /** The client's last `h`: stanzas it acknowledged, mod 2^32. */
  acked: number;
  /** An <r/> went out and its <a/> has not come back. */
  requested = false;
  /** `sent` when the last <r/> went out: another goes out only once more was sent. */
  askedAt = 0;
  #queue: string[];
  #head = 0;
  #bytes = 0;
  /** An acknowledgement came: the first-time leeway is spent. */
  #acknowledged = false;
  /** Stanzas written just before <enabled/> a client may count (the first <a/> only). */
  leeway = 0;
  #seen: [string, number][];

  constructor(
    readonly id: string | null,
    readonly timeoutMs: number,
    state?: Pick<SmState, "handled" | "acked" | "unacked" | "seen" | "recent">,
    /** Acknowledged stanzas kept (KEEP_ACKED in a cluster, none alone). */
    readonly keep = KEEP_ACKED,
  ) {
    this.handled = state?.handled ?? 0;
    this.acked = state?.acked ?? 0;
    const unacked = state?.unacked ?? [];
    for (const xml of unacked) this.#bytes += xml.length;
    const recent = state?.recent ?? [];
    this.#queue = recent.length ? [...recent, ...unacked] : unacked;
    this.#head = recent.length;
    this.#seen = state?.seen ?? [];
  }

  get resumable(): boolean {
    return this.id !== null;
  }

  /** Stanzas sent since <enable/>, mod 2^32. */
  get sent(): number {
    return (this.acked + this.unackedCount) % WRAP;
  }

  get unackedCount(): number {
    return this.#queue.length - this.#head;
  }

  /** Characters of the stanzas not acknowledged. */
  get bytes(): number {
    return this.#bytes;
  }

  /** A stanza written (or queued, while detached) to the client. */
  push(xml: string): void {
    this.#queue.push(flat(xml));
    this.#bytes += xml.length;
  }

  /**
   * The client's `h`: drops what it acknowledged. Returns false, changing nothing, when it
   * acknowledges more than was sent.
   */
  ack(h: number): boolean {
    const n = (h - this.acked + WRAP) % WRAP;
    if (n > this.unackedCount) return false;
    this.acked = h;
    for (let i = this.#head, end = this.#head + n; i < end; i++) {
      this.#bytes -= this.#queue[i].length;
    }
    this.#head += n;
    // Compacted now and then, not per ack: an ack drops from the front.
    if (this.#head === this.#queue.length && this.keep === 0) {
      this.#queue = [];
      this.#head = 0;
    } else if (this.#head >= 2 * this.keep && this.#head * 2 >= this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head - this.keep);
      this.#head = this.keep;
    }
    return true;
  }

  /**
   * The client's `h` in an <a/> or a <resume/>: "ok" when it acknowledges what was sent (or, the
   * first time, up to `leeway` more: clients that count stanzas written just before
   * <enabled/>, which counting goes on from, as ejabberd does), "stale" for an earlier count
   * (ignored), "too-high" otherwise.
   */
  acknowledge(h: number): "ok" | "stale" | "too-high" {
    if (this.ack(h)) {
      this.#acknowledged = true;
      return "ok";
    }
    const n = (h - this.acked + WRAP) % WRAP;
    if (n >= WRAP / 2) return "stale";
    if (this.#acknowledged || n - this.unackedCount > this.leeway) return "too-high";
    this.#acknowledged = true;
    this.rebase(h);
    return "ok";
  }

  /** Whether this stanza text was sent lately, acknowledged or not. */
  holds(xml: string): boolean {
    for (let i = this.#queue.length - 1; i >= 0; i--) if (this.#queue[i] === xml) return true;
    return false;
  }

  /**
   * The client says it got `h` stanzas, more than this knows were sent (a replica that missed the
   * last write of a node that died): all of them count as acknowledged, and counting goes on
   * from `h`.
   */
  rebase(h: number): void {
    this.ack(this.sent);
    this.acked = h;
  }

  /** Sent and not acknowledged, oldest first. */
  unacked(): string[] {
    return this.#queue.slice(this.#head);
  }

  /** Sent and not acknowledged after the first `skip` of them. */
  unackedFrom(skip: number): string[] {
    return this.#queue.slice(this.#head + skip);
  }

  /** Takes every unacknowledged stanza out (the session ends: they are handled otherwise). */
  drain(): string[] {
    const out = this.unacked();
    this.#queue = [];
    this.#head = 0;
    this.#bytes = 0;
    return out;
  }

  /** A client stanza was handled; `id` (its origin-id or id) is remembered for a while. */
  handledOne(id: string | undefined): void {
    this.handled = (this.handled + 1) % WRAP;
    if (id !== undefined) this.remember(id, this.handled);
  }

  /** Ids remembered so far (a replica is sent those it has not heard of). */
  remembered = 0;

  /** The last `n` ids remembered at most (what a replica has not heard of yet). */
  recentSeen(n: number): [string, number][] {
    return n <= 0 ? [] : this.#seen.slice(-n);
  }

  /**
   * Remembers the id of a client stanza, with the count of handled stanzas once it is counted
   * (it may be routed before: its count waits for what it stores).
   */
  remember(id: string, handled: number): void {
    this.remembered++;
    this.#seen.push([id, handled]);
    if (this.#seen.length > 2 * REMEMBERED_IDS) this.#seen = this.#seen.slice(-REMEMBERED_IDS);
  }

  /** Whether a client stanza with this id was handled already (a resent duplicate). */
  seen(id: string): boolean {
    for (let i = this.#seen.length - 1; i >= 0; i--) if (this.#seen[i][0] === id) return true;
    return false;
  }

  state(): SmState {
    return {
      id: this.id,
      timeoutMs: this.timeoutMs,
      handled: this.handled,
      acked: this.acked,
      unacked: this.unacked(),
      recent: this.#queue.slice(Math.max(0, this.#head - this.keep), this.#head),
      seen: this.#seen.slice(-REMEMBERED_IDS),
    };
  }
}
