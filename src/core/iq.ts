// An iq get/set being handled, with helpers to answer it exactly once.
import type { Element } from "../xml/element.ts";
import type { Jid } from "../jid/jid.ts";
import type { Router } from "../router/router.ts";
import {
  type ErrorCondition,
  type ErrorOptions,
  errorReply,
  iqResult,
} from "../router/stanza_error.ts";

export class IqRequest {
  #answered = false;
  constructor(
    readonly stanza: Element,
    readonly from: Jid,
    readonly to: Jid,
    readonly payload: Element,
    readonly router: Router,
  ) {}

  get type(): "get" | "set" {
    return this.stanza.attrs.type as "get" | "set";
  }

  /** The requester is the account the iq is addressed to (no `to`, or its own bare JID). */
  get self(): boolean {
    return !this.from.isDomain && this.from.bare === this.to.bare;
  }

  reply(payload?: Element): void {
    if (this.#answered) return;
    this.#answered = true;
    this.router.route(iqResult(this.stanza, payload), this.to, this.from);
  }

  error(condition: ErrorCondition, opts?: ErrorOptions): void {
    if (this.#answered) return;
    this.#answered = true;
    const reply = errorReply(this.stanza, condition, opts);
    if (reply) this.router.route(reply, this.to, this.from);
  }
}

export type IqHandler = (iq: IqRequest) => void | Promise<void>;
