// A pubsub request refused (XEP-0060 §7–8): a stanza error condition with, where the XEP names
// one, its pubsub#errors condition. Thrown by the service, answered by the iq handler.
import type { IqRequest } from "../core/iq.ts";
import type { ErrorCondition } from "../router/stanza_error.ts";
import { x } from "../xml/element.ts";
import { NS } from "../xml/ns.ts";

export class PubsubError extends Error {
  constructor(
    readonly condition: ErrorCondition,
    /** The pubsub#errors element's name, e.g. "precondition-not-met". */
    readonly app?: string,
    readonly text?: string,
  ) {
    super(app ? `${condition} (${app})` : condition);
  }

  /** Answers `iq` with this error. */
  answer(iq: IqRequest): void {
    iq.error(this.condition, {
      text: this.text,
      extra: this.app ? x(this.app, { xmlns: NS.pubsubErrors }) : undefined,
    });
  }
}
