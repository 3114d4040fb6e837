// The load generator (run pinned to its own core by bench/bench.ts). One scenario per run; prints
// one JSON line with its results. Sessions log in with the raw test client (over WebSocket, with
// bench/ws_client.ts), then message traffic is counted by scanning text, so the generator stays
// far cheaper than the server it measures.
import net from "node:net";
import tls from "node:tls";
import { createHash, createHmac, pbkdf2Sync, randomBytes } from "node:crypto";
import { componentLogin, HEADER, RawClient } from "../tests/helpers/raw_client.ts";
import { NS } from "../src/xml/ns.ts";
import type { Element } from "../src/xml/element.ts";
import { NativeClient } from "./native_client.ts";
import { WsClient } from "./ws_client.ts";
import type { Transport } from "./generator.ts";

interface Args {
  scenario:
    | "register"
    | "login"
    | "idle"
    | "throughput"
    | "latency"
    | "component"
    | "proxy"
    | "muc"
    | "muc-takeover"
    | "resume";
  port: number;
  users: number;
  seconds: number;
  concurrency: number;
  starttls?: boolean;
  mech?: "PLAIN" | "SCRAM-SHA-256";
  sessions?: number;
  rate?: number;
  componentPort?: number;
  /** Component instance i connects to componentPorts[i % length] (a cluster's nodes). */
  componentPorts?: number[];
  streams?: number;
  bytes?: number;
  instances?: number;
  occupants?: number;
  /** The MUC scenarios' room (local part); default one named for its size. */
  room?: string;
  /** muc-takeover: the process it kills (the room's node) and that node's c2s port. */
  killPid?: number;
  killPort?: number;
  /** Receivers log in here (another node of a cluster); senders on `port`. */
  peerPort?: number;
  /**
   * MUC occupant or component user i logs in on ports[i % length] (the nodes of a cluster);
   * default `port`.
   */
  ports?: number[];
  /** Idle sessions send initial presence (their records carry it). */
  presence?: boolean;
  /** Message body of the throughput scenario. */
  body?: string;
  /**
   * The clients' transport in the idle, throughput and latency scenarios (default tcp); websocket
   * logs them in at `httpPort` (RFC 7395, one node: no `peerPort`).
   */
  transport?: Transport;
  httpPort?: number;
  /**
   * Every session of the idle, throughput and latency scenarios enables stream management
   * (XEP-0198) with resumption after binding and answers each <r/> with what it received (TCP
   * only). An idle generator then cuts all its connections on SIGUSR2 (the sessions detach).
   */
  sm?: boolean;
  /** resume: rounds of cut and resumption; where it resumes after a kill; the session's resource. */
  rounds?: number;
  resumePort?: number;
  resource?: string;
}

const args: Args = JSON.parse(Deno.args[0]);
const user = (i: number) => `bench${i}`;
const PASSWORD = "benchpw";

function out(result: Record<string, unknown>): void {
  console.log(JSON.stringify(result));
}

async function register(): Promise<void> {
  let next = 0;
  const worker = async () => {
    const c = await RawClient.connect(args.port);
    await c.open();
    while (next < args.users) {
      const i = next++;
      const r = await c.iq(
        "set",
        `<query xmlns='${NS.register}'><username>${
          user(i)
        }</username><password>${PASSWORD}</password></query>`,
      );
      if (r.attrs.type !== "result" && !r.child("error")?.child("conflict")) {
        throw new Error(String(r));
      }
    }
    c.close();
  };
  await Promise.all(Array.from({ length: Math.min(8, args.users) }, worker));
  out({ registered: args.users });
}

/** SCRAM client keys per user, derived once: every login of a user reuses its salt. */
const keyCache = new Map<string, { clientKey: Buffer; storedKey: Buffer }>();

function scramKeys(name: string, salt: string, iterations: number) {
  const k = `${name} ${salt} ${iterations}`;
  let keys = keyCache.get(k);
  if (!keys) {
    const salted = pbkdf2Sync(PASSWORD, Buffer.from(salt, "base64"), iterations, 32, "sha256");
    const clientKey = createHmac("sha256", salted).update("Client Key").digest();
    keys = { clientKey, storedKey: createHash("sha256").update(clientKey).digest() };
    keyCache.set(k, keys);
  }
  return keys;
}

/**
 * One login as cheap for the generator as it can be: bytes are scanned for the few answers that
 * matter instead of parsed. Steps: [STARTTLS], SASL, stream restart, bind, close.
 */
function leanLogin(
  name: string,
  resource: string,
  starttls: boolean,
  mech: "PLAIN" | "SCRAM-SHA-256",
): Promise<void> {
  return new Promise((resolve, reject) => {
    const raw = net.connect(args.port, "127.0.0.1");
    raw.setNoDelay(true);
    let sock: net.Socket = raw;
    let buf = "";
    let step = starttls ? "proceed" : "challenge";
    const cnonce = randomBytes(12).toString("base64");
    const first = `n=${name},r=${cnonce}`;
    let serverFirst = "";
    const auth = () =>
      HEADER() +
      (mech === "PLAIN"
        ? `<auth xmlns='${NS.sasl}' mechanism='PLAIN'>${btoa(`\0${name}\0${PASSWORD}`)}</auth>`
        : `<auth xmlns='${NS.sasl}' mechanism='SCRAM-SHA-256'>${btoa("n,," + first)}</auth>`);
    if (mech === "PLAIN" && step === "challenge") step = "success";
    const fail = (e: Error) => {
      sock.destroy();
      reject(e);
    };
    const onData = (d: Uint8Array) => {
      buf += new TextDecoder().decode(d);
      if (buf.includes("<failure") || buf.includes("<stream:error")) return fail(new Error(buf));
      if (step === "proceed" && buf.includes("<proceed")) {
        buf = "";
        raw.off("data", onData);
        const secure = tls.connect({
          socket: raw,
          servername: "localhost",
          rejectUnauthorized: false,
        });
        sock = secure;
        secure.on("data", onData);
        secure.on("error", fail);
        secure.once("secureConnect", () => secure.write(auth()));
        step = mech === "PLAIN" ? "success" : "challenge";
      } else if (step === "challenge" && buf.includes("</challenge>")) {
        serverFirst = atob(/<challenge[^>]*>([^<]+)<\/challenge>/.exec(buf)![1]);
        buf = "";
        const a = Object.fromEntries(serverFirst.split(",").map((p) => [p[0], p.slice(2)]));
        const { clientKey, storedKey } = scramKeys(name, a.s, Number(a.i));
        const finalBare = `c=biws,r=${a.r}`;
        const sig = createHmac("sha256", storedKey).update(`${first},${serverFirst},${finalBare}`)
          .digest();
        const proof = Buffer.from(clientKey.map((b, i) => b ^ sig[i])).toString("base64");
        sock.write(`<response xmlns='${NS.sasl}'>${btoa(`${finalBare},p=${proof}`)}</response>`);
        step = "success";
      } else if (step === "success" && buf.includes("<success")) {
        buf = "";
        sock.write(
          HEADER() +
            `<iq type='set' id='b'><bind xmlns='${NS.bind}'><resource>${resource}</resource></bind></iq>`,
        );
        step = "bind";
      } else if (step === "bind" && buf.includes("</iq>")) {
        sock.end("</stream:stream>");
        sock.destroy();
        resolve();
      }
    };
    raw.on("data", onData);
    raw.on("error", fail);
    raw.once(
      "connect",
      () => raw.write(starttls ? HEADER() + `<starttls xmlns='${NS.tls}'/>` : auth()),
    );
  });
}

async function login(): Promise<void> {
  const deadline = performance.now() + args.seconds * 1000;
  let done = 0;
  let failed = 0;
  const worker = async (w: number) => {
    for (let k = 0; performance.now() < deadline; k++) {
      try {
        const name = user((w * 7919 + k) % args.users);
        await leanLogin(name, "w" + w, args.starttls ?? false, args.mech ?? "SCRAM-SHA-256");
        done++;
      } catch {
        failed++;
      }
    }
  };
  // Key derivation for every user happens before the clock starts.
  for (let i = 0; i < args.users && args.mech !== "PLAIN"; i++) {
    await leanLogin(user(i), "warm", false, "SCRAM-SHA-256").catch(() => failed++);
  }
  out({ phase: "start" });
  const t0 = performance.now();
  await Promise.all(Array.from({ length: args.concurrency }, (_, w) => worker(w)));
  const secs = (performance.now() - t0) / 1000;
  out({ logins: done, failed, seconds: secs, rate: done / secs });
}

/** A logged-in client of the scenarios that take a `transport`. */
interface Session {
  /** Sends `stanza` `times` times: over TCP in one write, over a WebSocket a message each. */
  send(stanza: string, times?: number): void;
  /** From now on `fn` gets whole messages' text as it arrives; nothing is parsed or kept. */
  onMessages(fn: (chunk: string) => void): void;
  /** Closes the stream (with stream management, after acknowledging all it received). */
  end(): void;
  /** Destroys the connection, the stream left open (a resumable session detaches). */
  cut(): void;
}

const SM_ENABLE = `<enable xmlns='${NS.sm}' resume='true'/>`;
/** A request for acknowledgement, as the server writes it (src/c2s/session.ts). */
const SM_R = `<r xmlns='${NS.sm}'/>`;
const smA = (h: number) => `<a xmlns='${NS.sm}' h='${h}'/>`;
const WRAP = 2 ** 32;
/** <a/> sent in answer to the server's <r/> so far (all sessions). */
let smAcks = 0;

/** Logs `name` in over `args.transport`: TCP at `port` (SCRAM), a WebSocket at `httpPort` (PLAIN). */
async function session(port: number, name: string, resource: string): Promise<Session> {
  if (args.transport === "websocket") {
    if (port !== args.port) throw new Error("WebSocket sessions are on one node (httpPort)");
    if (args.sm) throw new Error("stream management is measured over TCP");
    const ws = await WsClient.login(args.httpPort!, name, PASSWORD, resource);
    return {
      send: (stanza, times) => ws.send(stanza, times),
      onMessages: (fn) => ws.onMessages(fn),
      end: () => ws.ws.close(),
      cut: () => ws.ws.close(),
    };
  }
  const c = await RawClient.login(port, name, PASSWORD, { starttls: false, resource });
  const send = (stanza: string, times = 1) => c.send(stanza.repeat(times));
  if (!args.sm) {
    return {
      send,
      onMessages: (fn) => onMessages(c, fn),
      end: () => c.close(),
      cut: () => c.drop(),
    };
  }
  c.send(SM_ENABLE);
  await c.waitFor((e) => e.name === "enabled" && e.attrs.xmlns === NS.sm, 10_000, "<enabled/>");
  const acked = { h: 0 };
  return {
    send,
    onMessages: (fn) => onSmMessages(c, acked, fn),
    end: () => {
      c.send(smA(acked.h) + "</stream:stream>");
      c.socket.end();
    },
    cut: () => c.drop(),
  };
}

/** Ends the scenario's stream-managed sessions cleanly (nothing left owed to them), then exits. */
async function exitAfter(sessions: Session[]): Promise<never> {
  if (args.sm) {
    await new Promise((r) => setTimeout(r, 300)); // what is in flight arrives
    for (const s of sessions) s.end();
    await new Promise((r) => setTimeout(r, 300));
  }
  Deno.exit(0);
}

async function idle(): Promise<void> {
  const n = args.sessions!;
  const clients: Session[] = [];
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const i = next++;
      const c = await session(args.port, user(i % args.users), "idle" + i);
      if (args.presence) c.send("<presence/>");
      clients.push(c);
    }
  };
  await Promise.all(Array.from({ length: args.concurrency }, worker));
  for (const c of clients) c.onMessages(() => {});
  if (args.sm) {
    Deno.addSignalListener("SIGUSR2", () => {
      for (const c of clients) c.cut();
      out({ cut: clients.length });
    });
  }
  out({ ready: clients.length });
  await new Promise(() => {}); // held open until the orchestrator has measured and kills us
}

/** Replaces a client's parser with a scan for whole messages: `fn` gets complete ones only. */
function onMessages(c: RawClient, fn: (chunk: string) => void): void {
  c.socket.removeAllListeners("data");
  let tail = "";
  c.socket.on("data", (d: Uint8Array) => {
    const text = tail + new TextDecoder().decode(d);
    const end = text.lastIndexOf("</message>");
    if (end < 0) {
      tail = text;
      return;
    }
    tail = text.slice(end + 10);
    fn(text.slice(0, end + 10));
  });
}

/**
 * As onMessages, for a stream-managed client: each <r/> is answered with the stanzas received so
 * far (`acked.h`, mod 2^32), counted from the same scan; `fn` gets only text with messages in it.
 */
function onSmMessages(c: RawClient, acked: { h: number }, fn: (chunk: string) => void): void {
  c.socket.removeAllListeners("data");
  let tail = "";
  c.socket.on("data", (d: Uint8Array) => {
    const text = tail + new TextDecoder().decode(d);
    const r = text.lastIndexOf(SM_R);
    const end = Math.max(text.lastIndexOf("</message>") + 10, r < 0 ? 0 : r + SM_R.length);
    if (end < 10) {
      tail = text;
      return;
    }
    const whole = text.slice(0, end);
    tail = text.slice(end);
    const k = count(whole);
    acked.h = (acked.h + k + occurrences(whole, "<presence") + occurrences(whole, "<iq ")) % WRAP;
    if (r >= 0) {
      c.send(smA(acked.h));
      smAcks++;
    }
    if (k > 0) fn(whole);
  });
}

function occurrences(s: string, what: string): number {
  let n = 0;
  for (let i = s.indexOf(what); i >= 0; i = s.indexOf(what, i + what.length)) n++;
  return n;
}

/** Logged-in sender/receiver pairs; the receiver's text is scanned for message ends. */
async function pairs(n: number, onMessage: (pair: number, chunk: string) => void) {
  const list: { s: Session; r: Session }[] = [];
  for (let i = 0; i < n; i++) {
    const s = await session(args.port, user(2 * i), "s");
    const r = await session(args.peerPort ?? args.port, user(2 * i + 1), "r");
    r.onMessages((chunk) => onMessage(i, chunk));
    s.onMessages(() => {});
    list.push({ s, r });
  }
  return list;
}

function count(s: string): number {
  let n = 0;
  for (let i = s.indexOf("</message>"); i >= 0; i = s.indexOf("</message>", i + 10)) n++;
  return n;
}

async function throughput(): Promise<void> {
  const n = args.concurrency;
  const WINDOW = 64;
  let received = 0;
  let counting = false;
  let running = true;
  const msg = (i: number) =>
    `<message to='${user(2 * i + 1)}@localhost/r' type='chat'><body>${
      args.body ?? "benchmark message of a typical size"
    }</body></message>`;
  const list = await pairs(n, (i, chunk) => {
    const k = count(chunk);
    if (counting) received += k;
    if (running) list[i].s.send(msg(i), k); // closed loop: one new message per message delivered
  });
  for (let i = 0; i < n; i++) list[i].s.send(msg(i), WINDOW);
  await new Promise((r) => setTimeout(r, 1000)); // warm-up
  out({ phase: "start" });
  counting = true;
  const acks0 = smAcks;
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, args.seconds * 1000));
  const secs = (performance.now() - t0) / 1000;
  counting = false;
  running = false;
  out({ messages: received, seconds: secs, rate: received / secs, acks: smAcks - acks0 });
  await exitAfter(list.flatMap(({ s, r }) => [s, r]));
}

/** Calls `send` `rate` times per second, spread over 1 ms ticks; the returned function stops. */
function paced(rate: number, send: (k: number) => void): () => void {
  let sent = 0;
  const t0 = performance.now();
  const tick = setInterval(() => {
    const due = Math.floor((performance.now() - t0) * rate / 1000);
    for (; sent < due; sent++) send(sent);
  }, 1);
  return () => clearInterval(tick);
}

/** Adds now − t to `samples` for each id='t<t>' in `chunk` (ids stamped at sending). */
function sample(samples: number[], chunk: string, now: number): void {
  for (const m of chunk.matchAll(/id=["']t([0-9.]+)["']/g)) samples.push(now - Number(m[1]));
}

/** Sorts `samples` and prints their quantiles. */
function outQuantiles(samples: number[], extra: Record<string, unknown>): void {
  samples.sort((a, b) => a - b);
  const q = (p: number) => samples[Math.min(samples.length - 1, Math.floor(p * samples.length))];
  out({
    ...extra,
    samples: samples.length,
    p50: q(0.5),
    p99: q(0.99),
    p999: q(0.999),
    max: samples[samples.length - 1],
  });
}

async function latency(): Promise<void> {
  const n = args.concurrency;
  const rate = args.rate!;
  const samples: number[] = [];
  let measuring = false;
  const list = await pairs(n, (_i, chunk) => {
    const now = performance.now();
    if (measuring) sample(samples, chunk, now);
  });
  // Round-robin over the pairs.
  const stop = paced(rate, (k) => {
    const i = k % n;
    list[i].s.send(
      `<message to='${
        user(2 * i + 1)
      }@localhost/r' type='chat' id='t${performance.now()}'><body>latency probe</body></message>`,
    );
  });
  await new Promise((r) => setTimeout(r, 1000));
  out({ phase: "start" });
  measuring = true;
  await new Promise((r) => setTimeout(r, args.seconds * 1000));
  measuring = false;
  stop();
  outQuantiles(samples, { rate });
  await exitAfter(list.flatMap(({ s, r }) => [s, r]));
}

/** The value of attribute `name` in a start tag as the server writes it (double quotes). */
function attrOf(tag: string, name: string): string | undefined {
  const at = tag.indexOf(` ${name}="`);
  if (at < 0) return undefined;
  const start = at + name.length + 3;
  return tag.slice(start, tag.indexOf('"', start));
}

/**
 * Component round trips: users send to echo@gw.localhost, component instances answer each one
 * back to its sender (with its id), closed loop with a window per user. One round trip = two
 * routed stanzas. With `rate`: round trips started at a fixed pace, round-robin over the users,
 * and their latency. Instances connect to `componentPorts`, users to `ports`, round-robin.
 */
async function componentRoundTrips(): Promise<void> {
  const WINDOW = 32;
  const componentPorts = args.componentPorts ?? [args.componentPort!];
  const ports = args.ports ?? [args.port];
  let done = 0;
  let counting = false;
  const samples: number[] = [];
  const instances = await Promise.all(
    Array.from(
      { length: args.instances! },
      (_, i) =>
        componentLogin(componentPorts[i % componentPorts.length], "gw.localhost", "benchsecret"),
    ),
  );
  for (const inst of instances) {
    onMessages(inst, (chunk) => {
      let reply = "";
      // Scanned with indexOf: the generator's one connection of a single instance must not be
      // the bottleneck.
      for (let at = chunk.indexOf("<message "); at >= 0; at = chunk.indexOf("<message ", at + 1)) {
        const tag = chunk.slice(at, chunk.indexOf(">", at));
        const id = attrOf(tag, "id");
        reply += `<message from='echo@gw.localhost' to='${attrOf(tag, "from")}'${
          id ? ` id='${id}'` : ""
        }><body>pong</body></message>`;
      }
      inst.send(reply);
    });
  }
  const ping = "<message to='echo@gw.localhost'><body>ping</body></message>";
  const clients: RawClient[] = [];
  for (let i = 0; i < args.concurrency; i++) {
    const c = await RawClient.login(ports[i % ports.length], user(i), PASSWORD, {
      starttls: false,
      resource: "c",
    });
    onMessages(c, (chunk) => {
      const now = performance.now();
      if (args.rate) {
        if (counting) sample(samples, chunk, now);
        return;
      }
      const k = count(chunk);
      if (counting) done += k;
      c.send(ping.repeat(k));
    });
    clients.push(c);
  }
  let stop = () => {};
  if (args.rate) {
    stop = paced(args.rate, (k) =>
      clients[k % clients.length].send(
        `<message to='echo@gw.localhost' id='t${performance.now()}'><body>ping</body></message>`,
      ));
  } else for (const c of clients) c.send(ping.repeat(WINDOW));
  await new Promise((r) => setTimeout(r, 1000));
  out({ phase: "start" });
  counting = true;
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, args.seconds * 1000));
  const secs = (performance.now() - t0) / 1000;
  counting = false;
  stop();
  if (args.rate) outQuantiles(samples, { rate: args.rate });
  else out({ roundTrips: done, seconds: secs, rate: done / secs });
  Deno.exit(0);
}

type Conn = Deno.TcpConn;

/**
 * Sends `bytes` on each (writer, reader) socket pair at once; MiB/s over all of them. Native
 * sockets with 1 MiB reads and writes keep the generator's own cost per byte low.
 */
async function copyRate(pairs: { w: Conn; r: Conn }[], bytes: number): Promise<number> {
  const chunk = new Uint8Array(1 << 20);
  const t0 = performance.now();
  await Promise.all(pairs.flatMap(({ w, r }) => [
    (async () => {
      for (let sent = 0; sent < bytes;) {
        sent += await w.write(chunk.subarray(0, Math.min(chunk.length, bytes - sent)));
      }
    })(),
    (async () => {
      const buf = new Uint8Array(1 << 20);
      for (let got = 0; got < bytes;) {
        const n = await r.read(buf);
        if (n === null) throw new Error("stream ended early");
        got += n;
      }
    })(),
  ]));
  return pairs.length * bytes / (1 << 20) / ((performance.now() - t0) / 1000);
}

async function connectTo(port: number): Promise<Conn> {
  const c = await Deno.connect({ hostname: "127.0.0.1", port });
  c.setNoDelay(true);
  return c;
}

/** SOCKS5 CONNECT to the proxy for `hash`; resolves once the proxy accepted it. */
async function socksTo(port: number, hash: string): Promise<Conn> {
  const s = await connectTo(port);
  await s.write(
    Uint8Array.of(5, 1, 0, 5, 1, 0, 3, hash.length, ...new TextEncoder().encode(hash), 0, 0),
  );
  const need = 2 + 7 + hash.length;
  const buf = new Uint8Array(need);
  for (let got = 0; got < need;) {
    const n = await s.read(buf.subarray(got));
    if (n === null) throw new Error("proxy closed the connection");
    got += n;
  }
  if (buf[3] !== 0) throw new Error("proxy refused");
  return s;
}

/**
 * proxy65 transfers next to plain TCP copies between the same kind of endpoints. With `peerPort`
 * (a cluster), the same transfers also across two nodes: the target's connection on the node at
 * `port`, the requester's on the node at `peerPort`.
 */
async function proxyTransfer(): Promise<void> {
  const streams = args.streams!;
  const bytes = args.bytes!;
  const login = (port: number, resource: string) =>
    RawClient.login(port, user(0), PASSWORD, { starttls: false, resource });
  const requester = await login(args.port, "p");
  const streamhostOf = async (c: RawClient) => {
    const info = await c.iq(
      "get",
      "<query xmlns='http://jabber.org/protocol/bytestreams'/>",
      "proxy.localhost",
    );
    return Number(info.child("query")!.child("streamhost")!.attrs.port);
  };
  const proxyPort = await streamhostOf(requester);
  const open = async (tag: string, requesterPort: number) => {
    const pairs: { w: Conn; r: Conn }[] = [];
    for (let i = 0; i < streams; i++) {
      const sid = `${tag}${i}`;
      const target = `${user(1)}@localhost/t`;
      const hash = createHash("sha1").update(sid + requester.jid + target).digest("hex");
      const r = await socksTo(proxyPort, hash);
      const w = await socksTo(requesterPort, hash);
      const act = await requester.iq(
        "set",
        `<query xmlns='http://jabber.org/protocol/bytestreams' sid='${sid}'><activate>${target}</activate></query>`,
        "proxy.localhost",
      );
      if (act.attrs.type !== "result") throw new Error("activation failed: " + act);
      pairs.push({ w, r });
    }
    return pairs;
  };
  const proxied = await open("bench", proxyPort);
  const acrossPairs = args.peerPort
    ? await open("across", await streamhostOf(await login(args.peerPort, "q")))
    : undefined;
  out({ phase: "start" });
  const proxy = await copyRate(proxied, bytes);
  const across = acrossPairs && await copyRate(acrossPairs, bytes);
  // The same endpoints, connected directly.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const direct: { w: Conn; r: Conn }[] = [];
  for (let i = 0; i < streams; i++) {
    const w = await connectTo(listener.addr.port);
    direct.push({ w, r: await listener.accept() });
  }
  const plain = await copyRate(direct, bytes);
  out({ proxy, direct: plain, ratio: proxy / plain, ...across && { across } });
  Deno.exit(0);
}

/** The room of the MUC scenarios (`room`, or one named for its size). */
const mucRoom = () => `${args.room ?? `fanout${args.occupants}`}@conference.localhost`;

/**
 * Logs `n` occupants in (occupant i on ports[i % length]) and into the room, which occupant 0
 * creates and sizes for them; `fn` gets each occupant's text as it arrives, from its join on.
 */
async function occupy(
  n: number,
  fn: (i: number, text: string, now: number) => void,
): Promise<NativeClient[]> {
  const room = mucRoom();
  const clients: NativeClient[] = [];
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const i = next++;
      const port = args.ports?.[i % args.ports.length] ?? args.port;
      clients[i] = await NativeClient.login(port, user(i % args.users), PASSWORD, "m" + i);
    }
  };
  await Promise.all(Array.from({ length: 32 }, worker));
  const joinXml = (i: number) => `<presence to='${room}/n${i}'><x xmlns='${NS.muc}'/></presence>`;
  clients[0].send(joinXml(0));
  await clients[0].until('code="201"');
  clients[0].send(
    `<iq type='set' id='cfg' to='${room}'><query xmlns='${NS.mucOwner}'><x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_maxusers'><value>${n}</value></field></x></query></iq>`,
  );
  const cfg = await clients[0].until('id="cfg"');
  if (!cfg.includes('type="result"')) throw new Error("room configuration failed: " + cfg);
  const joined: Promise<void>[] = [];
  for (let i = 0; i < n; i++) {
    let resolve!: () => void;
    joined.push(new Promise((r) => resolve = r));
    let inRoom = i === 0;
    if (inRoom) resolve();
    clients[i].read((text, now) => {
      if (!inRoom && text.includes(`from="${room}/n${i}"`) && text.includes('code="110"')) {
        inRoom = true;
        resolve();
      }
      fn(i, text, now);
    });
    if (i > 0) clients[i].send(joinXml(i));
    if (i % 50 === 49) await Promise.all(joined); // joins in batches: the room's presence is O(n²)
  }
  await Promise.all(joined);
  return clients;
}

/**
 * MUC fan-out: `occupants` sessions in one room. Saturation: a few senders keep a window of
 * groupchat messages in flight (each echo lets its sender send one more); stanzas out counts every
 * delivery to every occupant. With `rate`: messages in per second at a fixed pace, latency from
 * sending to each occupant's receipt.
 */
async function mucFanout(): Promise<void> {
  const n = args.occupants!;
  const room = mucRoom();
  let measuring = false;
  let delivered = 0;
  // Preallocated, and ids found without regexes: the generator's own garbage collection would
  // otherwise show up as latency.
  const samples = new Float64Array(Math.ceil((args.rate ?? 0) * n * (args.seconds + 2)));
  let taken = 0;
  const senders = Math.min(10, n);
  const WINDOW = 8;
  const send = (k: number, count: number) => {
    let xml = "";
    for (let j = 0; j < count; j++) {
      xml +=
        `<message to='${room}' type='groupchat' id='t${performance.now()}-${k}'><body>fan-out message of a typical size</body></message>`;
    }
    clients[k].send(xml);
  };
  const mine = Array.from({ length: senders }, (_, i) => new RegExp(`id="t[0-9.]+-${i}"`, "g"));
  const clients = await occupy(n, (i, text, now) => {
    const k = count(text);
    if (k === 0) return;
    if (measuring) {
      delivered += k;
      for (let at = text.indexOf('id="t'); at >= 0 && taken < samples.length;) {
        const end = text.indexOf("-", at);
        samples[taken++] = now - Number(text.slice(at + 5, end));
        at = text.indexOf('id="t', end);
      }
    }
    if (!args.rate && i < senders) {
      const own = text.match(mine[i])?.length ?? 0;
      if (own) send(i, own);
    }
  });
  let stop = () => {};
  if (args.rate) stop = paced(args.rate, (k) => send(k % senders, 1));
  else for (let k = 0; k < senders; k++) send(k, WINDOW);
  await new Promise((r) => setTimeout(r, 1000)); // warm-up
  out({ phase: "start" });
  measuring = true;
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, args.seconds * 1000));
  measuring = false;
  const secs = (performance.now() - t0) / 1000;
  stop();
  const sorted = samples.subarray(0, taken).sort();
  const q = (p: number) => sorted[Math.min(taken - 1, Math.floor(p * taken))];
  out({
    stanzasOut: delivered / secs,
    messagesIn: delivered / secs / n,
    samples: taken,
    p50: q(0.5) ?? 0,
    p99: q(0.99) ?? 0,
  });
  Deno.exit(0);
}

/**
 * MUC takeover: `occupants` spread over `ports`, the room run by the node at `killPort`. An
 * occupant on another node sends `rate` groupchat messages per second; the generator kills
 * process `killPid` (SIGKILL) and reports, in ms from the kill, when the first message sent after
 * it reached a surviving occupant and every one of them, and when the occupants of the dead node
 * were all shown leaving (status 333) to a first and to every survivor. Gives up after `seconds`.
 */
async function mucTakeover(): Promise<void> {
  const n = args.occupants!;
  const room = mucRoom();
  const ports = args.ports!;
  const survives = (i: number) => ports[i % ports.length] !== args.killPort;
  const survivors = Array.from({ length: n }, (_, i) => i).filter(survives);
  const gone = n - survivors.length;
  let killedAt = Infinity;
  // Per survivor: ms from the kill to its first message sent after it, and to its last 333.
  const message = new Map<number, number>();
  const left = new Map<number, number>();
  const seen333 = new Map<number, number>();
  const clients = await occupy(n, (i, text, now) => {
    if (!survives(i) || now < killedAt) return;
    for (const [tag] of text.matchAll(/<message [^>]*>/g)) {
      const sent = /id="p([0-9.]+)"/.exec(tag)?.[1];
      if (sent && !tag.includes('type="error"') && Number(sent) >= killedAt && !message.has(i)) {
        message.set(i, now - killedAt);
      }
    }
    const codes = text.split('code="333"').length - 1;
    if (codes === 0) return;
    const total = (seen333.get(i) ?? 0) + codes;
    seen333.set(i, total);
    if (total >= gone) left.set(i, now - killedAt);
  });
  const prober = clients[survivors[0]];
  const stop = paced(args.rate!, () =>
    prober.send(
      `<message to='${room}' type='groupchat' id='p${performance.now()}'><body>takeover probe</body></message>`,
    ));
  await new Promise((r) => setTimeout(r, 1000)); // the room's replica is at most 100 ms behind
  out({ phase: "start" });
  killedAt = performance.now();
  Deno.kill(args.killPid!, "SIGKILL");
  const deadline = killedAt + args.seconds * 1000;
  while (
    (message.size < survivors.length || left.size < survivors.length) &&
    performance.now() < deadline
  ) await new Promise((r) => setTimeout(r, 10));
  stop();
  const times = (m: Map<number, number>) =>
    m.size < survivors.length ? [Math.min(...m.values()), NaN] : [
      Math.min(...m.values()),
      Math.max(...m.values()),
    ];
  const [messageFirst, messageAll] = times(message);
  const [leftFirst, leftAll] = times(left);
  out({ survivors: survivors.length, gone, messageFirst, messageAll, leftFirst, leftAll });
  Deno.exit(0);
}

/**
 * Counts what a stream-managed RawClient receives (stanzas, mod 2^32, into `state.h`; message ids
 * into `state.ids`) and answers each <r/> at once, as elements arrive; <r/> is not kept.
 */
function smCounting(c: RawClient, state: { h: number; ids: string[] }): void {
  const received = c.received;
  received.push = (...els: Element[]) => {
    for (const el of els) {
      if (el.name === "r" && el.attrs.xmlns === NS.sm) {
        c.send(smA(state.h));
        continue;
      }
      if (el.name === "message" || el.name === "presence" || el.name === "iq") {
        state.h = (state.h + 1) % WRAP;
        if (el.name === "message") state.ids.push(el.attrs.id ?? "");
      }
      Array.prototype.push.call(received, el);
    }
    return received.length;
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Resumption (XEP-0198): a stream-managed client C (user 0, resource `resource`) cut and resumed
 * `rounds` times, C starting on ports[0] and resuming in round r on ports[(r + 1) % length] (one
 * port: the same node each time; two: the other node each time). Each round its contact P (user
 * 1, at `peerPort`, else ports[0]) sends C 10 messages, which C receives and acknowledges; C's
 * socket is destroyed; P sends 10 more, queued on the detached session; 50 ms later C opens a new
 * connection, authenticates and resumes. Times in ms from starting the new connection to the
 * features after authentication, to <resumed/>, and to the last queued message, which must be the 10 once each and in order
 * (`anomalies` counts rounds where they were not). With `killPid`: one round, where instead of the
 * cut process `killPid` (C's node) is killed with SIGKILL, P (on the surviving node) sends its 10
 * just after, and C resumes at `resumePort`, timed from the kill; a <failed/> resumption is tried
 * again on the same stream every 20 ms, for `seconds` at most.
 */
async function resume(): Promise<void> {
  const ports = args.ports ?? [args.port];
  const BATCH = 10;
  const state = { h: 0, ids: [] as string[] };
  const login = (port: number, name: string, resource: string) =>
    RawClient.login(port, name, PASSWORD, { starttls: false, resource });
  let c = await login(ports[0], user(0), args.resource ?? "sm");
  c.send(SM_ENABLE);
  const enabled = await c.waitFor((e) => e.name === "enabled", 10_000, "<enabled/>");
  smCounting(c, state);
  const previd = enabled.attrs.id!;
  const full = c.jid;
  const p = await login(args.peerPort ?? ports[0], user(1), "peer");
  const batch = (tag: string) => {
    let xml = "";
    for (let j = 0; j < BATCH; j++) {
      xml +=
        `<message to='${full}' type='chat' id='${tag}-${j}'><body>resume probe</body></message>`;
    }
    p.send(xml);
  };
  const resumed: number[] = [];
  const authed: number[] = [];
  const delivered: number[] = [];
  let anomalies = 0;
  let attempts = 0;
  const rounds = args.killPid ? 1 : args.rounds ?? 50;
  const deadline = performance.now() + 120_000;
  for (let r = 0; r < rounds && performance.now() < deadline; r++) {
    batch(`l${r}`);
    for (let j = 0; j < BATCH; j++) {
      await c.waitFor((e) => e.name === "message" && e.attrs.id === `l${r}-${j}`, 10_000);
    }
    await sleep(args.killPid ? 500 : 20); // C's <a/> reaches the server (and the replica)
    let t0: number;
    if (args.killPid) {
      t0 = performance.now();
      Deno.kill(args.killPid, "SIGKILL");
      c.drop();
      batch(`q${r}`);
    } else {
      c.drop();
      batch(`q${r}`);
      await sleep(50);
      t0 = performance.now();
    }
    const idsBefore = state.ids.length;
    c = await RawClient.connect(args.killPid ? args.resumePort! : ports[(r + 1) % ports.length]);
    smCounting(c, state);
    await c.open();
    if (!await c.scram(user(0), PASSWORD)) throw new Error("login failed");
    await c.open();
    authed.push(performance.now() - t0);
    const giveUp = t0 + args.seconds * 1000;
    while (true) {
      attempts++;
      c.send(`<resume xmlns='${NS.sm}' previd='${previd}' h='${state.h}'/>`);
      const answer = await c.waitFor(
        (e) => e.attrs.xmlns === NS.sm && (e.name === "resumed" || e.name === "failed"),
        10_000,
        "<resumed/>",
      );
      if (answer.name === "resumed") break;
      if (!args.killPid || performance.now() > giveUp) {
        throw new Error(`resumption failed in round ${r}: ${answer}`);
      }
      await sleep(20);
    }
    resumed.push(performance.now() - t0);
    try {
      for (let j = 0; j < BATCH; j++) {
        await c.waitFor((e) => e.name === "message" && e.attrs.id === `q${r}-${j}`, 5000);
      }
      delivered.push(performance.now() - t0);
      await sleep(20);
      const got = state.ids.slice(idsBefore).join(" ");
      const want = Array.from({ length: BATCH }, (_, j) => `q${r}-${j}`).join(" ");
      if (got !== want) anomalies++;
    } catch {
      anomalies++;
    }
    c.received.length = 0;
  }
  const q = (xs: number[], p: number) => {
    const s = [...xs].sort((a, b) => a - b);
    return s[Math.min(s.length - 1, Math.floor(p * s.length))];
  };
  out({
    rounds: resumed.length,
    attempts,
    anomalies,
    resumedP50: q(resumed, 0.5),
    resumedP99: q(resumed, 0.99),
    resumedMax: Math.max(...resumed),
    authedP50: q(authed, 0.5),
    deliveredP50: q(delivered, 0.5) ?? NaN,
    deliveredP99: q(delivered, 0.99) ?? NaN,
  });
  // Both sessions end cleanly: nothing stays detached or owed.
  c.send(smA(state.h) + "</stream:stream>");
  p.close();
  await sleep(300);
  Deno.exit(0);
}

const scenarios: Record<Args["scenario"], () => Promise<void>> = {
  register,
  login,
  idle,
  throughput,
  latency,
  component: componentRoundTrips,
  proxy: proxyTransfer,
  muc: mucFanout,
  "muc-takeover": mucTakeover,
  resume,
};
await scenarios[args.scenario]();
