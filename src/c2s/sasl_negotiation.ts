// The SASL exchange on a client stream (RFC 6120 §6.4): <auth>, <challenge>/<response>,
// <abort>, and <success> or <failure>. Failures are answered after a delay that doubles with
// each failure on the connection; after MAX_FAILURES the stream is closed.
import { type Element, x } from "../xml/element.ts";
import { NS } from "../xml/ns.ts";
import { MECHANISMS } from "../sasl/mechanisms.ts";
import type { SaslContext, SaslFailure, SaslMechanism, SaslStep } from "../sasl/mechanism.ts";

const MAX_FAILURES = 5;
const MAX_DELAY_MS = 10_000;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

export interface SaslPeer {
  send(el: Element | string): void;
  /** Mechanisms offered on this stream now. */
  offered(): string[];
  context(): SaslContext;
  succeeded(user: string): void;
  failed(condition: SaslFailure, attempts: number): void;
  tooManyFailures(): void;
}

export class SaslNegotiation {
  #mech: SaslMechanism | null = null;
  #failures = 0;
  #busy = false;

  constructor(readonly peer: SaslPeer, readonly baseDelayMs: number) {}

  /** Handles one element in the SASL namespace. */
  async handle(el: Element): Promise<void> {
    if (this.#busy) return; // a client must wait for our answer (RFC 6120 §6.4.2)
    this.#busy = true;
    try {
      await this.#handle(el);
    } finally {
      this.#busy = false;
    }
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
      this.#mech = MECHANISMS[name](this.peer.context());
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
    this.peer.send(
      x(
        "failure",
        { xmlns: NS.sasl },
        x(condition),
        text ? x("text", { "xml:lang": "en" }, text) : undefined,
      ),
    );
    if (this.#failures >= MAX_FAILURES) this.peer.tooManyFailures();
  }
}

function b64(data: Uint8Array): string {
  return data.length === 0
    ? "="
    : Buffer.from(data.buffer, data.byteOffset, data.length).toString("base64");
}
