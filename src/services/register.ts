// In-band registration (XEP-0077): account creation before authentication when the host allows
// it, and password change and account removal for authenticated users. Accounts created are
// limited per source address (IPv6: per /64) and period, as ejabberd's `registration_timeout`
// and Prosody's `min_seconds_between_registrations` do; beyond, a request gets ejabberd's answer,
// <resource-constraint/> (type wait). A registration in flight holds its place, so a burst
// cannot pass the check at once; one that fails (a name taken meanwhile) gives its place back.
import type { Host, Module, PreAuthEvent } from "../core/host.ts";
import type { IqRequest } from "../core/iq.ts";
import { type Element, x } from "../xml/element.ts";
import { NS } from "../xml/ns.ts";
import { prepLocal } from "../jid/precis.ts";
import { deriveCredentials } from "../sasl/scram_keys.ts";
import { errorReply, iqResult } from "../router/stanza_error.ts";
import { failureError, logFailure } from "../core/failure.ts";
import { goUnavailable } from "../im/presence.ts";
import { isLocal } from "../router/sessions.ts";
import { addressKey, EventLimit, type Settle } from "../sasl/throttle.ts";
import { logger } from "../log/logger.ts";

const log = logger("register");

const form = () =>
  x(
    "query",
    { xmlns: NS.register },
    x("instructions", {}, "Choose a username and password."),
    x("username"),
    x("password"),
  );

/** Account creation before authentication; a failure (the store's) is answered, never dropped. */
function create(host: Host, limit: EventLimit, { stanza, remote, reply }: PreAuthEvent): void {
  const answer = (el: Element | null): void => {
    if (el) reply(el.setAttr("from", undefined));
  };
  createAccount(host, stanza, answer, () => limit.acquire(addressKey(remote))).catch((e) => {
    logFailure("registration", e);
    answer(errorReply(stanza, ...failureError(e)));
  });
}

async function createAccount(
  host: Host,
  stanza: Element,
  answer: (el: Element | null) => void,
  place: () => Promise<Settle | undefined>,
): Promise<void> {
  const q = stanza.child("query", NS.register)!;
  if (stanza.attrs.type === "get") return answer(iqResult(stanza, form()));
  if (stanza.attrs.type !== "set" || q.child("remove")) {
    return answer(errorReply(stanza, "bad-request"));
  }
  // A name that cannot be had is answered before the limit is consulted: only accounts created
  // use up an address's allowance.
  const user = prepLocal(q.childText("username") ?? "");
  if (!user) return answer(errorReply(stanza, "not-acceptable"));
  if (await host.server.store.getCredentials(user, host.domain)) {
    return answer(errorReply(stanza, "conflict"));
  }
  const settle = await place();
  if (!settle) {
    return answer(errorReply(stanza, "resource-constraint", { text: TOO_QUICKLY }));
  }
  let created = false;
  try {
    const creds = await deriveCredentials(
      q.childText("password") ?? "",
      host.server.config.auth.scram_iterations,
    );
    if (!creds) return answer(errorReply(stanza, "not-acceptable"));
    created = await host.server.store.createAccount(user, host.domain, creds);
    answer(created ? iqResult(stanza) : errorReply(stanza, "conflict"));
  } finally {
    settle(created);
  }
}

const TOO_QUICKLY = "Too many accounts registered from your address; try again later";

async function manage(host: Host, iq: IqRequest): Promise<void> {
  if (!iq.self) return iq.error("forbidden");
  const { store, sessions, serial } = host.server;
  const { local, domain, bare } = iq.from;
  if (iq.type === "get") {
    return iq.reply(
      x("query", { xmlns: NS.register }, x("registered"), x("username", {}, local), x("password")),
    );
  }
  if (iq.payload.child("remove")) {
    // Contacts are told the user is gone while the roster that names them still exists, on the
    // account's queue so that nothing reads the roster in between.
    await serial.call(bare, async () => {
      for (const s of sessions.resources(bare)) {
        if (isLocal(s) ? s.announced : s.available) {
          await goUnavailable(host, s, x("presence", { from: s.jid.full, type: "unavailable" }));
        }
      }
      // Its archive entries being written go with it (none left for a namesake to inherit).
      await host.server.archive.stored();
      await store.deleteAccount(local, domain);
    });
    iq.reply();
    host.events.fire("account/deleted", iq.from.toBare());
    for (const s of [...sessions.resources(bare)]) {
      sessions.close(s, "not-authorized", "account removed");
    }
    return;
  }
  const username = iq.payload.childText("username");
  if (username !== undefined && prepLocal(username) !== local) return iq.error("bad-request");
  const creds = await deriveCredentials(
    iq.payload.childText("password") ?? "",
    host.server.config.auth.scram_iterations,
  );
  if (!creds) return iq.error("not-acceptable");
  await store.setCredentials(local, domain, creds);
  iq.reply();
}

export const registerModule: Module = {
  name: "register",
  install(host) {
    const { registrations_per_address: perAddress, registration_period: period } =
      host.server.config.limits;
    const limit = new EventLimit("registrations from", perAddress, period * 1000);
    if (host.config.registration) {
      host.features.add(NS.register);
      log.info(
        "in-band registration on {domain}: {limit} accounts per address (IPv6: per /64) every " +
          "{period} s (0 = no limit)",
        { domain: host.domain, limit: perAddress, period },
      );
    }
    host.events.on("c2s/register", (ev) => create(host, limit, ev));
    host.onIq("account", NS.register, (iq) => manage(host, iq));
  },
};
