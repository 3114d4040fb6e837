// The SASL exchange on a client stream (RFC 6120 §6.4): <auth>, <challenge>/<response>,
// <abort>, and <success> or <failure>. Elements are handled one at a time in arrival order, so
// pipelined ones each get their answer; more than MAX_PENDING waiting close the stream. Failures
// are answered after a delay that doubles with each failure on the connection; after MAX_FAILURES
// the stream is closed. Wrong passwords count against the client's address and the account
// (AuthThrottle); a store error is a <temporary-auth-failure/>, never a crash.
import { type Element, x } from "../xml/element.ts";
import { NS } from "../xml/ns.ts";
import { MECHANISMS } from "../sasl/mechanisms.ts";
import type { SaslContext, SaslFailure, SaslMechanism, SaslStep } from "../sasl/mechanism.ts";
import type { AuthThrottle } from "../sasl/throttle.ts";
import { logger } from "../log/logger.ts";

const log = logger("sasl");
const MAX_FAILURES = 5;
/** A client waits for each answer (RFC 6120 §6.4.2); a few pipelined elements are tolerated. */
const MAX_PENDING = MAX_FAILURES;
const MAX_DELAY_MS = 10_000;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

export interface SaslPeer {
  send(el: Element | string): void;
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
  #domain = "";
  #failures = 0;
  #pending = 0;
  #queue: Promise<void> = Promise.resolve();
  #closed = false;

  constructor(readonly peer: SaslPeer, readonly baseDelayMs: number) {}

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
      this.#mech = null;
      return this.#fail("aborted", false);
    }
    if (el.name === "auth") {
      const name = el.attrs.mechanism ?? "";
      if (!this.peer.offered().includes(name)) {
        // A mechanism we have but do not offer here is PLAIN on an unencrypted stream.
        return this.#fail(name in MECHANISMS ? "encryption-required" : "invalid-mechanism", false);
      }
      const refused = this.peer.throttle.refusal(this.peer.remote);
      if (refused) return this.#fail("temporary-auth-failure", true, refused);
      const ctx = this.peer.context();
      this.#domain = ctx.domain;
      this.#mech = MECHANISMS[name]({
        ...ctx,
        throttled: (user) => this.peer.throttle.accountRefusal(`${user}@${ctx.domain}`),
      });
    } else if (el.name !== "response" || !this.#mech) {
      return this.#fail("malformed-request", false);
    }
    const text = el.text().trim();
    if (text !== "=" && !BASE64.test(text)) {
      this.#mech = null;
      return this.#fail("incorrect-encoding", true);
    }
    const data = text === "="
      ? new Uint8Array()
      : Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
    const step = await this.#mech.step(data);
    await this.#answer(step);
  }

  #answer(step: SaslStep): Promise<void> | void {
    if (step.kind === "challenge") {
      this.peer.send(x("challenge", { xmlns: NS.sasl }, b64(step.data)));
    } else if (step.kind === "success") {
      this.#mech = null;
      this.peer.send(x("success", { xmlns: NS.sasl }, step.data ? b64(step.data) : undefined));
      this.peer.succeeded(step.user);
    } else {
      // Only a wrong password (or unknown user) is a guess.
      if (step.condition === "not-authorized") {
        const user = this.#mech?.user;
        this.peer.throttle.failed(this.peer.remote, user && `${user}@${this.#domain}`);
      }
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

function b64(data: Uint8Array): string {
  return data.length === 0
    ? "="
    : Buffer.from(data.buffer, data.byteOffset, data.length).toString("base64");
}
