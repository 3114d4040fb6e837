// An iq get/set being handled, with helpers to answer it exactly once.
import { type Element, x } from "../xml/element.ts";
import { NS } from "../xml/ns.ts";
import type { Jid } from "../jid/jid.ts";
import type { Router } from "../router/router.ts";
import type { Logger } from "@logtape/logtape";
import {
  type ErrorCondition,
  type ErrorOptions,
  errorReply,
  iqResult,
} from "../router/stanza_error.ts";
import { failureError, logFailure } from "./failure.ts";

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

/**
 * iq get/set handlers by payload namespace, for any entity that answers iqs (a host, its
 * accounts, a service such as the proxy). Unknown namespaces get service-unavailable; a handler
 * that throws or rejects is logged and answered as failureError says (resource-constraint of type
 * wait when the store is busy or unreachable, internal-server-error otherwise); answers to iqs we
 * sent (result/error) end here.
 */
export class IqHandlers {
  #handlers = new Map<string, IqHandler>();

  /** `log` is the owner's logger, where a failing handler is reported. */
  constructor(readonly router: Router, readonly log: Logger) {}

  on(ns: string, handler: IqHandler): this {
    this.#handlers.set(ns, handler);
    return this;
  }

  /** A handler for queries only: a set gets bad-request. */
  onGet(ns: string, handler: IqHandler): this {
    return this.on(ns, (iq) => iq.type === "get" ? handler(iq) : iq.error("bad-request"));
  }

  dispatch(stanza: Element, from: Jid, to: Jid): void {
    const type = stanza.attrs.type;
    if (type !== "get" && type !== "set") return;
    const payload = stanza.elements()[0];
    const handler = payload && this.#handlers.get(payload.attrs.xmlns ?? "");
    if (!handler) return this.router.bounce(stanza, "service-unavailable");
    const req = new IqRequest(stanza, from, to, payload, this.router);
    const failed = (e: unknown) => {
      logFailure(`iq handler for ${payload.attrs.xmlns}`, e, this.log);
      req.error(...failureError(e));
    };
    try {
      const r = handler(req);
      if (r instanceof Promise) r.catch(failed);
    } catch (e) {
      failed(e);
    }
  }
}

export interface DiscoIdentity {
  category: string;
  type: string;
  name?: string;
}

/** A disco#info answer (XEP-0030) listing identities and features. */
export function discoInfoPayload(identities: DiscoIdentity[], features: Iterable<string>): Element {
  return x(
    "query",
    { xmlns: NS.discoInfo },
    ...identities.map((i) => x("identity", { category: i.category, type: i.type, name: i.name })),
    ...[...features].sort().map((f) => x("feature", { var: f })),
  );
}
