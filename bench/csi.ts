// Client state indication (XEP-0352) in `deno task bench` (BENCH_ONLY=csi): what an inactive
// session is spared. On bench.ts's server (one node, pinned to the server core): a user (bench0,
// resource "phone") with CONTACTS contacts (bench1…) subscribed both ways through the protocol
// (subscribe / subscribed each way, bounded in rounds and time), each contact sending presence
// updates (<show/> and <status/>) at RATE per second, spread evenly over the second, for SECONDS.
// Phases, each of SECONDS:
// - idle: everyone online, nothing sent (the server's CPU with these sessions and no work);
// - active / inactive, alternately, ROUNDS each: the presence stanzas the user's session gets
//   and their bytes; inactive, after <inactive/> (then <active/>: what was held, the newest of
//   each contact, is counted apart);
// - inactive with a chat message with a body from a contact every MESSAGE_EVERY_MS (each sends
//   what is held first: a phone whose user chats now and then).
// The server's CPU per presence update sent, net of the idle phase's CPU for the same time;
// the rounds' median. A phase ends when everything sent was handled: active, each update
// received; inactive, /metrics counting each held (parley_csi_stanzas_total), bounded in time.
//
// This file is also its own load generator: run as a script (pinned to the generator's core, as
// bench/load.ts is) it plays the user and the contacts on bench/native_client.ts's sockets and
// prints JSON lines as load.ts does.
import { cpuSeconds, pinnedGenerator, SECONDS } from "./generator.ts";
import { NativeClient } from "./native_client.ts";
import { lines } from "../tests/helpers/lines.ts";
import { attr, out, readStanzas, until, within } from "./stanza_text.ts";

type Row = (what: string, value: string, yardstick: string) => void;

/** The user's contacts, each sending presence updates. */
const CONTACTS = 100;
/** Presence updates per second of each contact. */
const RATE = 5;
/** Active and inactive phases, alternately. */
const ROUNDS = 3;
/** In the last phase, a chat message with a body from a contact this often. */
const MESSAGE_EVERY_MS = 1000;
const PASSWORD = "benchpw"; // bench/load.ts's accounts
const user = (i: number) => `bench${i}`;
const OWNER = `${user(0)}@localhost`;
const CSI = "urn:xmpp:csi:0";
/** The whole generator run may not take longer than this (it is killed). */
const GENERATOR_LIMIT_MS = 300_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

type Mode = "idle" | "active" | "inactive" | "messages";

// ---------------------------------------------------------------------------------------------
// The orchestrator (bench.ts's part).

const script = new URL(import.meta.url).pathname;

/**
 * Runs the generator pinned to the generator's core against the server at `port` (its /metrics
 * at `httpPort`); `pids`: the server's processes, whose CPU each phase measures.
 */
export async function csiBench(
  row: Row,
  port: number,
  httpPort: number,
  pids: () => number[],
): Promise<void> {
  const modes: Mode[] = ["idle"];
  for (let r = 0; r < ROUNDS; r++) modes.push("active", "inactive");
  modes.push("messages");
  const child = pinnedGenerator(script, {
    port,
    httpPort,
    contacts: CONTACTS,
    rate: RATE,
    seconds: SECONDS,
    messageEvery: MESSAGE_EVERY_MS,
    modes,
  }).spawn();
  const limit = setTimeout(() => {
    console.error(`csi: generator still running after ${GENERATOR_LIMIT_MS} ms, killed`);
    child.kill("SIGKILL");
  }, GENERATOR_LIMIT_MS);
  const used = () => pids().reduce((sum, pid) => sum + cpuSeconds(pid), 0);
  const results: Record<string, number | string>[] = [];
  let cpu0 = used();
  let t0 = performance.now();
  try {
    for await (const text of lines(child.stdout)) {
      const line = JSON.parse(text);
      if (line.phase === "start") {
        cpu0 = used();
        t0 = performance.now();
      } else if (line.phase === "info") {
        console.log(`  csi: ${JSON.stringify(line)}`);
      } else if (line.phase === "extra") {
        Object.assign(results[results.length - 1], line); // after the measured phase
      } else {
        const secs = (performance.now() - t0) / 1000;
        results.push({ ...line, cpu: used() - cpu0, secs });
      }
    }
    const status = await child.status;
    if (!status.success) throw new Error(`csi generator failed (exit code ${status.code})`);
  } finally {
    clearTimeout(limit);
  }
  const idle = results.find((r) => r.mode === "idle")!;
  const idlePerSecond = Number(idle.cpu) / Number(idle.secs);
  const of = (mode: Mode) => results.filter((r) => r.mode === mode);
  /** Server CPU per update, µs, net of what the idle server uses in the same time. */
  const us = (r: Record<string, number | string>) =>
    (Number(r.cpu) - idlePerSecond * Number(r.secs)) / Number(r.updates) * 1e6;
  const busy = (r: Record<string, number | string>) => Number(r.cpu) / Number(r.secs);
  console.log(
    `  csi phases: ${
      results.map((r) =>
        `${r.mode} ${r.updates ?? 0} sent, ${r.presences ?? 0} got` +
        (r.flushed !== undefined ? ` (+${r.flushed} on <active/>)` : "") +
        `, ${(busy(r) * 100).toFixed(1)}% core` +
        (r.mode === "idle" ? "" : `, ${us(r).toFixed(1)} µs/update`)
      ).join("; ")
    }`,
  );
  const active = of("active");
  const inactive = of("inactive");
  const [messages] = of("messages");
  const mid = (rs: Record<string, number | string>[], k: string) =>
    median(rs.map((r) => Number(r[k])));
  const sent = mid(active, "updates");
  const kib = (b: number) => `${(b / 1024).toFixed(1)} KiB`;
  const inactiveGot = mid(inactive, "presences");
  const flushed = mid(inactive, "flushed");
  const spared = (got: number, of: number) => `${((1 - got / of) * 100).toFixed(1)} %`;
  const where = `a user with ${CONTACTS} contacts, each sending ${RATE} presence updates/s`;
  row(
    `CSI, ${where} for ${SECONDS} s: presence stanzas her session received, active / inactive (+ the newest of each contact sent on \`<active/>\`)`,
    `${mid(active, "presences")} / ${inactiveGot} (+${flushed})`,
    `${sent} sent`,
  );
  row(
    "  presence stanzas an inactive session is spared (of those sent, the flush on `<active/>` counted as received); bytes active / inactive + flush",
    `${spared(inactiveGot + flushed, mid(inactive, "updates"))}; ${kib(mid(active, "bytes"))} / ${
      kib(mid(inactive, "bytes") + mid(inactive, "flushedBytes"))
    }`,
    "",
  );
  row(
    `  inactive, a chat message with a body every ${
      MESSAGE_EVERY_MS / 1000
    } s (each sends what is held first): presence stanzas received; spared`,
    `${messages.presences}; ${spared(Number(messages.presences), Number(messages.updates))}`,
    `${messages.messages} messages, ${messages.flushes} flushes`,
  );
  row(
    `  server CPU per presence update (µs, net of the idle server's ${
      (idlePerSecond * 100).toFixed(1)
    }% of its core), active / inactive / inactive with messages (median of ${ROUNDS} rounds)`,
    `${median(active.map(us)).toFixed(1)} / ${median(inactive.map(us)).toFixed(1)} / ${
      us(messages).toFixed(1)
    }`,
    `core busy ${(median(active.map(busy)) * 100).toFixed(1)}% / ${
      (median(inactive.map(busy)) * 100).toFixed(1)
    }% / ${(busy(messages) * 100).toFixed(1)}%`,
  );
  const missing = active.reduce((n, r) => n + Number(r.updates) - Number(r.presences), 0);
  const notHeld = inactive.reduce((n, r) => n + Number(r.updates) - Number(r.held), 0);
  row(
    "  active: updates not received; inactive: updates not counted held by /metrics",
    `${missing}; ${notHeld}`,
    "both 0",
  );
}

// ---------------------------------------------------------------------------------------------
// The generator (this file run as a script).

interface Args {
  port: number;
  httpPort: number;
  contacts: number;
  rate: number;
  seconds: number;
  messageEvery: number;
  modes: Mode[];
}

/** The server's CSI counters (/metrics). */
async function csiCounters(httpPort: number): Promise<{ held: number; flushes: number }> {
  const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
  const get = (re: RegExp) => Number(re.exec(text)?.[1] ?? 0);
  return {
    held: get(/^parley_csi_stanzas_total\{outcome="held"\} (\S+)/m),
    flushes: get(/^parley_csi_flushes_total (\S+)/m),
  };
}

async function generator(a: Args): Promise<void> {
  const n = a.contacts;
  const t0 = performance.now();
  const since = () => Math.round(performance.now() - t0);

  // The user, whose session is measured: what reaches it, by kind.
  const owner = await within(
    NativeClient.login(a.port, user(0), PASSWORD, "phone"),
    10_000,
    "the user's login",
  );
  const got = { presences: 0, bytes: 0, messages: 0, fromContact: new Uint8Array(n + 1) };
  const iqs = new Map<string, string>();
  void readStanzas(owner, (s) => {
    if (s.startsWith("<presence")) {
      const type = attr(s, "type");
      const from = attr(s, "from") ?? "";
      if (type === "subscribe") {
        owner.send(`<presence type='subscribed' to='${from}'/>`);
      } else if (type === undefined && from.startsWith("bench")) {
        const i = Number(from.slice(5, from.indexOf("@")));
        if (!(i >= 1 && i <= n)) return; // the user's own presence, reflected
        got.presences++;
        got.bytes += s.length;
        got.fromContact[i] = 1;
      }
    } else if (s.startsWith("<message")) got.messages++;
    else if (s.startsWith("<iq")) iqs.set(attr(s, "id") ?? "", s);
  });
  /** An iq of the user's, answered (bounded). */
  let ids = 0;
  const iq = async (type: string, payload: string): Promise<string> => {
    const id = `q${++ids}`;
    owner.send(`<iq type='${type}' id='${id}'>${payload}</iq>`);
    if (!await until(() => iqs.has(id), 10_000)) throw new Error(`no answer to ${payload}`);
    return iqs.get(id)!;
  };
  owner.send("<presence/>");

  // The contacts, online; each approves the user's subscription request and asks in turn.
  const subscribed = new Uint8Array(n + 1);
  const contacts: NativeClient[] = [];
  let next = 1;
  const worker = async () => {
    while (next <= n) {
      const i = next++;
      const c = await within(
        NativeClient.login(a.port, user(i), PASSWORD, "c"),
        10_000,
        `login of ${user(i)}`,
      );
      contacts[i] = c;
      void readStanzas(c, (s) => {
        if (!s.startsWith("<presence") || !attr(s, "from")?.startsWith(OWNER)) return;
        const type = attr(s, "type");
        if (type === "subscribe") {
          c.send(
            `<presence type='subscribed' to='${OWNER}'/><presence type='subscribe' to='${OWNER}'/>`,
          );
        } else if (type === "subscribed") subscribed[i] = 1;
      });
      c.send("<presence/>");
    }
  };
  await Promise.all(Array.from({ length: 20 }, worker));
  // Contacts already subscribed both ways (a run on a store that has them) need nothing.
  const roster = await iq("get", "<query xmlns='jabber:iq:roster'/>");
  for (const m of roster.matchAll(/<item [^>]*>/g)) {
    const jid = attr(m[0], "jid") ?? "";
    const i = Number(jid.slice(5, jid.indexOf("@")));
    if (attr(m[0], "subscription") === "both" && i >= 1 && i <= n) subscribed[i] = 1;
  }
  const done = () => subscribed.reduce((s, v) => s + v, 0) === n;
  // A request that reached a contact before the server saw it available is asked again (bounded).
  for (let round = 0; round < 10 && !done(); round++) {
    for (let i = 1; i <= n; i++) {
      if (!subscribed[i]) owner.send(`<presence type='subscribe' to='${user(i)}@localhost'/>`);
    }
    await until(done, 5000);
  }
  if (!done()) {
    throw new Error(`mutual subscriptions: ${subscribed.reduce((s, v) => s + v, 0)} of ${n}`);
  }
  const rosterMs = since();
  // Every contact's presence seen by the user (an already subscribed one's came at login).
  for (let i = 1; i <= n; i++) {
    if (!got.fromContact[i]) contacts[i].send(`<presence><status>online</status></presence>`);
  }
  const everyone = () => got.fromContact.reduce((s, v) => s + v, 0) === n;
  if (!await until(everyone, 10_000)) throw new Error("not every contact's presence arrived");
  out({ phase: "info", contacts: n, rosterMs, readyMs: since() });
  await sleep(1000); // what the setup left goes out first

  const ping = () => iq("get", "<ping xmlns='urn:xmpp:ping'/>");
  let update = 0;
  let message = 0;
  for (const mode of a.modes) {
    // <inactive/> read by the server before the phase: a ping sent after it is answered.
    if (mode === "inactive" || mode === "messages") {
      owner.send(`<inactive xmlns='${CSI}'/>`);
    }
    await ping();
    const before = await csiCounters(a.httpPort);
    const start = { ...got };
    out({ phase: "start", mode });
    const total = mode === "idle" ? 0 : Math.round(n * a.rate * a.seconds);
    const messages = mode === "messages" ? Math.floor(a.seconds * 1000 / a.messageEvery) : 0;
    let sent = 0;
    let sentMessages = 0;
    const paceStart = performance.now();
    // Updates in turn over the contacts, evenly spread; messages at their own pace.
    await new Promise<void>((resolve) => {
      const tick = setInterval(() => {
        const elapsed = performance.now() - paceStart;
        const due = Math.min(total, Math.floor(elapsed * n * a.rate / 1000));
        for (; sent < due; sent++, update++) {
          const show = update % 2 ? "away" : "xa";
          contacts[1 + sent % n].send(
            `<presence><show>${show}</show><status>on the move, update ${update}</status></presence>`,
          );
        }
        const dueMessages = Math.min(messages, Math.floor(elapsed / a.messageEvery));
        for (; sentMessages < dueMessages; sentMessages++, message++) {
          contacts[1 + message % n].send(
            `<message type='chat' to='${OWNER}' id='m${message}'><body>are you there? ${message}</body></message>`,
          );
        }
        if (elapsed >= a.seconds * 1000) {
          clearInterval(tick);
          resolve();
        }
      }, 1);
    });
    // Handled: each update received (active), or counted held (inactive); bounded.
    let held = 0;
    if (mode === "active") await until(() => got.presences - start.presences >= total, 10_000);
    else if (mode !== "idle") {
      const deadline = performance.now() + 10_000;
      while (performance.now() < deadline) {
        held = (await csiCounters(a.httpPort)).held - before.held;
        if (held >= total) break;
        await sleep(50);
      }
    }
    const after = await csiCounters(a.httpPort);
    out({
      mode,
      updates: total,
      presences: got.presences - start.presences,
      bytes: got.bytes - start.bytes,
      messages: got.messages - start.messages,
      held: after.held - before.held,
      flushes: after.flushes - before.flushes,
    });
    if (mode === "inactive" || mode === "messages") {
      // What is held goes on <active/>: the newest update of each contact that sent one since.
      const p0 = got.presences;
      const b0 = got.bytes;
      owner.send(`<active xmlns='${CSI}'/>`);
      await ping(); // answered after what <active/> sent: all read
      out({ phase: "extra", flushed: got.presences - p0, flushedBytes: got.bytes - b0 });
    }
    await sleep(500);
  }
}

if (import.meta.main) {
  const a: Args = JSON.parse(Deno.args[0]);
  const watchdog = setTimeout(() => {
    console.error("csi generator: out of time");
    Deno.exit(2);
  }, GENERATOR_LIMIT_MS - 10_000);
  Deno.unrefTimer(watchdog);
  try {
    await generator(a);
    Deno.exit(0);
  } catch (e) {
    console.error("csi generator:", e);
    Deno.exit(1);
  }
}
