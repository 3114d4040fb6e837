// The SASL exchange on a client stream (RFC 6120 §6.4): <auth>, <challenge>/<response>,
// <abort>, and <success> or <failure>. Elements are handled one at a time in arrival order, so
// pipelined ones each get their answer; more than MAX_PENDING waiting close the stream. Failures
// are answered after a delay that doubles with each failure on the connection; after MAX_FAILURES
// the stream is closed. Each step is an attempt held against the client's address and the account
// until its outcome is known (AuthThrottle): wrong passwords count against both, malformed or
// abandoned exchanges against the address. A store error is a <temporary-auth-failure/>, never a
// crash.
import { Buffer } from "node:buffer";
import { type Element, x } from "../xml/element.ts";
import { NS } from "../xml/ns.ts";
import { MECHANISMS } from "../sasl/mechanisms.ts";
import type { SaslContext, SaslFailure, SaslMechanism, SaslStep } from "../sasl/mechanism.ts";
import type { AttemptOutcome, AuthAttempt, AuthThrottle } from "../sasl/throttle.ts";
import { type AuthCounts, type AuthOutcomes, OTHER_MECHANISM } from "../metrics/counters.ts";
import { logger } from "../log/logger.ts";

const log = logger("sasl");
const MAX_FAILURES = 5;
/** A client waits for each answer (RFC 6120 §6.4.2); a few pipelined elements are tolerated. */
const MAX_PENDING = MAX_FAILURES;
const MAX_DELAY_MS = 10_000;
/**
 * Longest base64 payload of an <auth> or <response>, refused before it is even validated: the
 * messages of SCRAM and PLAIN take a few hundred bytes, and a JID with the longest parts fits.
 */
export const MAX_PAYLOAD_CHARS = 8192;
/** Base64 (RFC 4648 §4), checked together with a length that is a multiple of 4. */
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

export interface SaslPeer {
  send(el: Element | string): void;
  /** Where each <success/> and <failure/> is counted (/metrics). */
  auth: AuthCounts;
  /** Mechanisms offered on this stream now. */
  offered(): string[];
  context(): Omit<SaslContext, "throttled">;
  /** The client's address ("ip:port") and the server's failed-authentication limits. */
  remote: string;
  throttle: AuthThrottle;
  succeeded(user: string): void;
  failed(condition: SaslFailure, attempts: number): void;
  tooManyFailures(): void;
}

export class SaslNegotiation {
  #mech: SaslMechanism | null = null;
  /** The step being handled, held against the limits until its outcome. */
  #attempt: AuthAttempt | undefined;
  #failures = 0;
  #pending = 0;
  #queue: Promise<void> = Promise.resolve();
  #closed = false;
  /** Counts of the mechanism the last <auth> named. */
  #outcomes: AuthOutcomes;

  constructor(readonly peer: SaslPeer, readonly baseDelayMs: number) {
    this.#outcomes = peer.auth.of(OTHER_MECHANISM);
  }

  /** Handles one element in the SASL namespace, after those before it. Never rejects. */
  handle(el: Element): Promise<void> {
    if (this.#closed) return this.#queue;
    if (++this.#pending > MAX_PENDING) {
      this.#close();
      return this.#queue;
    }
    this.#queue = this.#queue.then(async () => {
      try {
        if (!this.#closed) await this.#handle(el);
      } catch (e) {
        // The store (or anything else) failed: this attempt cannot be decided now.
        log.error("authentication on {remote} failed for an internal error: {error}", {
          remote: this.peer.remote,
          error: String(e),
        });
        this.#mech = null;
        this.#send("temporary-auth-failure", "The server cannot check credentials now");
      } finally {
        this.#pending--;
      }
    });
    return this.#queue;
  }

  async #handle(el: Element): Promise<void> {
    if (el.name === "abort") {
      // Abandoning an exchange that has begun is a failure: otherwise a client could send
      // first messages and abort them forever, never failing.
      const begun = this.#mech !== null;
      this.#mech = null;
      if (begun) this.peer.throttle.failed(this.peer.remote);
      return this.#fail("aborted", begun);
    }
    if (el.name === "auth") {
      const name = el.attrs.mechanism ?? "";
      this.#outcomes = this.peer.auth.of(name);
      if (!this.peer.offered().includes(name)) {
        // A mechanism we have but do not offer here is PLAIN on an unencrypted stream.
        return this.#fail(name in MECHANISMS ? "encryption-required" : "invalid-mechanism", false);
      }
      const ctx = this.peer.context();
      this.#mech = MECHANISMS[name]({
        ...ctx,
        throttled: (user) =>
          this.#attempt?.name(`${user}@${ctx.domain}`) ?? Promise.resolve(undefined),
      });
    } else if (el.name !== "response" || !this.#mech) {
      this.peer.throttle.failed(this.peer.remote);
      return this.#fail("malformed-request", true);
    }
    const attempt = await this.peer.throttle.begin(this.peer.remote);
    if (typeof attempt === "string") {
      this.#mech = null;
      return this.#fail("temporary-auth-failure", true, attempt);
    }
    this.#attempt = attempt;
    let step: SaslStep | undefined;
    try {
      step = await this.#step(this.#mech, el.text().trim());
    } finally {
      // Settled before the answer's delay, so that those waiting for a place do not wait on it.
      this.#attempt = undefined;
      attempt.end(step ? outcomeOf(step) : "none");
    }
    await this.#answer(step);
  }

  /** Decodes the payload, bounded and checked before any work, and runs the mechanism's step. */
  #step(mech: SaslMechanism, text: string): Promise<SaslStep> | SaslStep {
    if (text.length > MAX_PAYLOAD_CHARS) {
      return { kind: "failure", condition: "malformed-request", text: "payload too long" };
    }
    if (text !== "=" && (text.length % 4 !== 0 || !BASE64.test(text))) {
      return { kind: "failure", condition: "incorrect-encoding" };
    }
    return mech.step(text === "=" ? new Uint8Array() : Buffer.from(text, "base64"));
  }

  #answer(step: SaslStep): Promise<void> | void {
    if (step.kind === "challenge") {
      this.peer.send(x("challenge", { xmlns: NS.sasl }, b64(step.data)));
    } else if (step.kind === "success") {
      this.#mech = null;
      this.#outcomes.success++;
      this.peer.send(x("success", { xmlns: NS.sasl }, step.data ? b64(step.data) : undefined));
      this.peer.succeeded(step.user);
    } else {
      this.#mech = null;
      return this.#fail(step.condition, true, step.text);
    }
  }

  async #fail(condition: SaslFailure, counts: boolean, text?: string): Promise<void> {
    if (counts) {
      this.#failures++;
      this.peer.failed(condition, this.#failures);
      const delay = Math.min(MAX_DELAY_MS, this.baseDelayMs * 2 ** (this.#failures - 1));
      if (delay > 0) await new Promise((r) => setTimeout(r, delay));
    }
    this.#send(condition, text);
    if (this.#failures >= MAX_FAILURES) this.#close();
  }

  #send(condition: SaslFailure, text?: string): void {
    if (this.#closed) return;
    this.#outcomes.failure++;
    this.peer.send(
      x(
        "failure",
        { xmlns: NS.sasl },
        x(condition),
        text ? x("text", { "xml:lang": "en" }, text) : undefined,
      ),
    );
  }

  /** Closes the stream; elements still queued are dropped unanswered with it. */
  #close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.peer.tooManyFailures();
  }
}

/** What a step's result means for the failed-authentication limits. */
function outcomeOf(step: SaslStep): AttemptOutcome {
  if (step.kind !== "failure" || step.condition === "temporary-auth-failure") return "none";
  return step.condition === "not-authorized" ? "guess" : "malformed";
}

function b64(data: Uint8Array): string {
  return data.length === 0
    ? "="
    : Buffer.from(data.buffer, data.byteOffset, data.length).toString("base64");
}
