// A real browser client: Converse.js 14 (npm `converse.js`, pinned in deno.json) in Debian's
// headless Chromium (installed by .ci/run), driven with puppeteer-core, against a two-node
// Parley cluster on 127.0.0.1/127.0.0.2 sharing one PostgreSQL. alice logs in from Converse
// (SCRAM: the http listener is plain http from loopback, so Parley offers no PLAIN there) to n1,
// over WebSocket (RFC 7395) in one test and BOSH (XEP-0124/0206) in the other; bob is a TCP
// client on n2. Before alice's Converse logs in, she and bob have a history in the archive
// (XEP-0313): 10 messages exchanged between bob and alice's other client (TCP, on n2), then 5 bob
// sends while she has no client online (stored offline for her, and archived). Once logged in,
// alice opens her chat with bob: Converse fetches its newest page from the archive (through n1,
// from the shared store), and is sent the offline messages too, with the same stanza ids
// (XEP-0359): the chat shows the 15 in order, each once. Then alice types a message into
// Converse's chat box as a person would, bob receives it, bob's reply must show up in Converse's
// chat view after the history. A screenshot of the chat is kept (printed path:
// $PARLEY_ARTIFACTS, else <tmp>/parley-artifacts).
//
// Converse is served by the test itself over http (a Deno.serve on 127.0.0.1, port 0): its
// `dist/` from Deno's npm cache, found with `deno info --json npm:converse.js@<pinned>` (the
// package's `localPath`; this also downloads it when missing), and an index.html calling
// `converse.initialize` with a small plugin of the test's (PROBE_PLUGIN) that records what
// Converse parsed from live messages and from archive results.
import assert from "node:assert/strict";
import { tmpdir } from "node:os";
import { extname, join, normalize } from "node:path";
import puppeteer, { type Browser, type Page } from "puppeteer-core";
import {
  C2S_LISTENER,
  clusterTest,
  presenceFrom,
  startCluster,
  type TestCluster,
} from "../helpers/cluster.ts";
import { archivedCount } from "../helpers/mam.ts";
import { parley } from "../helpers/process.ts";
import type { RawClient } from "../helpers/raw_client.ts";

const CHROMIUM = "/usr/bin/chromium";
const DENO_JSON = new URL("../../deno.json", import.meta.url).pathname;
/** What the browser may take, from its launch to the reply shown (a few seconds when it works). */
const BROWSER_MS = 30_000;

/** The directory of Converse's `dist/` in Deno's npm cache (fetched there when missing). */
async function converseDist(): Promise<string> {
  const spec = JSON.parse(await Deno.readTextFile(DENO_JSON)).imports["converse.js"] as string;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", "--config", DENO_JSON, spec],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(`deno info ${spec}: ${new TextDecoder().decode(out.stderr)}`);
  const info = JSON.parse(new TextDecoder().decode(out.stdout)) as {
    npmPackages: Record<string, { name: string; localPath?: string }>;
  };
  const pkg = Object.values(info.npmPackages).find((p) => p.name === "converse.js");
  if (!pkg?.localPath) throw new Error(`deno info ${spec} names no local copy of converse.js`);
  const dist = join(pkg.localPath, "dist");
  await Deno.stat(join(dist, "converse.min.js"));
  return dist;
}

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".map": "application/json",
  ".wasm": "application/wasm",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".woff": "font/woff",
  ".woff2": "font/woff2",
  ".ttf": "font/ttf",
  ".mp3": "audio/mpeg",
  ".ogg": "audio/ogg",
};

/** Converse's name of the test's plugin (to list in `whitelisted_plugins`). */
const PROBE = "parley-probe";

/** What Converse parsed from a message: its body and the stanza ids it keeps (by JID). */
interface Parsed {
  body: string | null;
  /** `stanza_id <by>` attributes: the archive's id (a result's) or a <stanza-id/>'s. */
  ids: Record<string, string>;
  delayed: boolean;
}

/**
 * A Converse plugin recording, in `window.parleyProbe`, what Converse parsed from each live
 * message stanza (`live`) and from each archive result (`archived`), in the order it got them.
 */
const PROBE_PLUGIN = `
const probe = window.parleyProbe = { live: [], archived: [] };
const parsed = (a) => ({
  body: a.body ?? null,
  ids: Object.fromEntries(Object.entries(a).filter(([k]) => k.startsWith("stanza_id "))),
  delayed: !!a.is_delayed,
});
converse.plugins.add(${JSON.stringify(PROBE)}, {
  initialize() {
    const { api } = this._converse;
    api.listen.on("message", (d) => d.attrs?.body && probe.live.push(parsed(d.attrs)));
    api.listen.on("MAMResult", (d) => probe.archived.push(...d.messages.map(parsed)));
  },
});`;

/** Serves index.html at / and Converse's dist/ under /dist/; the page's URL. */
function servePage(dist: string, settings: Record<string, unknown>) {
  const index = `<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Parley – Converse.js</title>
  <link rel="icon" href="data:,">
  <link rel="stylesheet" href="/dist/converse.min.css">
  <script type="module" src="/dist/converse.min.js"></script>
</head>
<body class="converse-fullscreen">
  <script type="module">${PROBE_PLUGIN}
converse.initialize(${JSON.stringify(settings)});</script>
</body>
</html>`;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const path = decodeURIComponent(new URL(req.url).pathname);
    if (path === "/" || path === "/index.html") {
      return new Response(index, { headers: { "content-type": TYPES[".html"] } });
    }
    const rel = normalize(path.slice("/dist/".length));
    if (!path.startsWith("/dist/") || rel.startsWith("..")) {
      return new Response("not found", { status: 404 });
    }
    try {
      const body = await Deno.readFile(join(dist, rel));
      const type = TYPES[extname(rel)] ?? "application/octet-stream";
      return new Response(body, { headers: { "content-type": type } });
    } catch {
      return new Response("not found", { status: 404 });
    }
  });
  return { server, url: `http://127.0.0.1:${server.addr.port}/` };
}

/** Where screenshots go: $PARLEY_ARTIFACTS, else <tmp>/parley-artifacts. */
async function artifactPath(name: string): Promise<string> {
  const dir = Deno.env.get("PARLEY_ARTIFACTS") ?? join(tmpdir(), "parley-artifacts");
  await Deno.mkdir(dir, { recursive: true });
  return join(dir, name);
}

async function launchChromium(): Promise<Browser> {
  try {
    await Deno.stat(CHROMIUM);
  } catch {
    throw new Error(`${CHROMIUM} is missing: apt-get install chromium (.ci/run does)`);
  }
  return await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    // Root (as CI runs) has no sandbox; /dev/shm may be small in containers; no name is
    // resolved (only loopback addresses are used, and nothing may leave this machine).
    args: [
      "--no-sandbox",
      "--disable-dev-shm-usage",
      "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.*",
    ],
    defaultViewport: { width: 1200, height: 800 },
    timeout: BROWSER_MS,
    protocolTimeout: BROWSER_MS,
  });
}

/** Closes the browser; kills it if it does not close in time. */
async function closeBrowser(browser: Browser): Promise<void> {
  const proc = browser.process();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<void>((r) => timer = setTimeout(r, 5000));
  await Promise.race([browser.close().catch(() => {}), timeout]);
  clearTimeout(timer);
  if (proc && proc.exitCode === null) proc.kill("SIGKILL");
}

type Transport = "websocket" | "bosh";

/** Messages alice's other client and bob exchange, then messages bob sends her while offline. */
const HISTORY = 10;
const OFFLINE = 5;

/** A message of alice's history with bob, as Converse should show it. */
interface Shown {
  from: string | null;
  text: string | undefined;
}

/**
 * Alice's history with bob, made before her Converse logs in (bob on n2, online): alice logs in
 * from a TCP client ("phone") and they exchange HISTORY messages, each sent once the one before
 * arrived (to each other's bare JID); she leaves, and bob sends OFFLINE more, stored offline for
 * her. Returns once alice's archive holds them all. The phone is on bob's node, which routes,
 * stamps and writes the whole history in one order (Converse reads it through n1, from the
 * shared store): a message and a quick reply routed by two nodes within one millisecond may be
 * archived the other way round.
 */
async function historyBeforeLogin(c: TestCluster, bob: RawClient, tag: string): Promise<Shown[]> {
  const shown: Shown[] = [];
  const phone = await c.login(1, "alice", "phone");
  try {
    phone.send("<presence/>");
    await bob.waitFor(presenceFrom("alice@localhost/phone"), 5000, "alice/phone available");
    for (let i = 1; i <= HISTORY; i++) {
      const [from, to, toBare] = i % 2 ? [phone, bob, "bob"] : [bob, phone, "alice"];
      const text = `history ${i} ${tag}`;
      from.send(
        `<message to='${toBare}@localhost' type='chat' id='h${i}-${tag}'>` +
          `<body>${text}</body></message>`,
      );
      await to.waitFor((el) => el.name === "message" && el.childText("body") === text, 5000, text);
      shown.push({ from: from.jid, text });
    }
  } finally {
    phone.close();
  }
  // Gone: her contact sees it (and messages to her bare JID are stored offline).
  await bob.waitFor(presenceFrom("alice@localhost/phone", "unavailable"), 5000, "alice/phone gone");
  for (let i = 1; i <= OFFLINE; i++) {
    const text = `offline ${i} ${tag}`;
    bob.send(
      `<message to='alice@localhost' type='chat' id='o${i}-${tag}'><body>${text}</body></message>`,
    );
    shown.push({ from: bob.jid, text });
  }
  // An offline message is archived once stored offline. Read by a resource that never becomes
  // available (offline messages are not delivered to it).
  const reader = await c.login(0, "alice", "reader");
  try {
    await archivedCount(reader, HISTORY + OFFLINE, { with: "bob@localhost" });
  } finally {
    reader.close();
  }
  return shown;
}

/** The scenario of the file's header, with alice's Converse connecting over `transport`. */
async function converseChat(transport: Transport): Promise<void> {
  const dist = await converseDist();
  const c: TestCluster = await startCluster(2, {
    overrides: {
      // Strophe refuses SCRAM with fewer than 4096 iterations (the cluster helper's default is 64).
      auth: { scram_iterations: 4096 },
      listeners: [C2S_LISTENER, { type: "http", bind: "{node_host}", port: 0 }],
    },
  });
  let bob: RawClient | undefined;
  let page: Page | undefined;
  let browser: Browser | undefined;
  let web: ReturnType<typeof servePage> | undefined;
  const consoleLines: string[] = [];
  let ok = false;
  const tag = crypto.randomUUID().slice(0, 8);
  try {
    const [n1] = c.nodes;
    // The http listener comes second in `listeners`: its port is the second one logged.
    const http = `http://${n1.host}:${n1.process!.ports[1]}`;
    // Accounts as an operator makes them (`parley user add`), with the configured iterations.
    for (const user of ["alice", "bob"]) {
      const add = await parley(
        ["user", "add", `${user}@localhost`, "--config", c.configFile, "--node", "n1"],
        "secret\n",
      );
      assert.equal(add.code, 0, add.stderr);
    }
    await c.befriend("alice", "bob");
    await c.formed();
    bob = await c.login(1, "bob", "desk");
    bob.send("<presence/>");
    const history = await historyBeforeLogin(c, bob, tag);

    if (transport === "bosh") {
      // Said plainly when BOSH is not there at all, rather than as a login that never ends.
      const probe = await fetch(`${http}/http-bind`);
      await probe.body?.cancel();
      assert.notEqual(probe.status, 404, `${http}/http-bind: 404, no BOSH on the http listener`);
    }
    web = servePage(dist, {
      ...(transport === "websocket"
        ? { websocket_url: `${http.replace("http:", "ws:")}/xmpp-websocket` }
        : { bosh_service_url: `${http}/http-bind` }),
      discover_connection_methods: false,
      jid: "alice@localhost/browser",
      password: "secret",
      auto_login: true,
      auto_reconnect: false,
      view_mode: "fullscreen",
      assets_path: "/dist/",
      i18n: "en",
      loglevel: "info",
      play_sounds: false,
      show_desktop_notifications: false,
      // A fresh session each time: nothing kept from an earlier page.
      persistent_store: "sessionStorage",
      whitelisted_plugins: [PROBE],
    });

    const deadline = Date.now() + BROWSER_MS;
    const left = () => Math.max(1, deadline - Date.now());
    browser = await launchChromium();
    page = await browser.newPage();
    page.on("console", (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
    page.on("pageerror", (e) => consoleLines.push(`pageerror: ${e}`));
    page.on("requestfailed", (r) => consoleLines.push(`requestfailed: ${r.url()}`));
    let boshAnswers = 0;
    page.on("response", (r) => {
      if (r.status() >= 400) consoleLines.push(`${r.status()}: ${r.url()}`);
      if (r.url().endsWith("/http-bind") && r.status() === 200) boshAnswers++;
    });
    // Nothing leaves this machine: Converse's page links a few images on its own website.
    await page.setRequestInterception(true);
    page.on("request", (r) => {
      if (/^(https?|wss?):\/\/127\.0\.0\.\d+[:/]/.test(r.url())) r.continue();
      else r.abort("blockedbyclient");
    });
    await page.goto(web.url, { timeout: left() });

    // Logged in: bob is in alice's roster (fetched from the server); open a chat as a person
    // would, by clicking him. Once the offline messages are handled: the first one moves him to
    // the roster's "New messages" (a click meanwhile may hit the entry being replaced).
    const offline = JSON.stringify(history.slice(HISTORY).map((m) => m.text));
    await page.waitForFunction(
      `${offline}.every((t) => window.parleyProbe.live.some((p) => p.body === t))`,
      { timeout: left() },
    ).catch(async (e) => {
      const live = await page!.evaluate("JSON.stringify(window.parleyProbe.live)");
      throw new Error(`the offline messages were not all handled: ${live}`, { cause: e });
    });
    const contact = 'a.open-chat[data-jid="bob@localhost"]';
    await page.waitForSelector(contact, { visible: true, timeout: left() });
    await page.click(contact);
    const textarea = 'converse-chat[jid="bob@localhost"] textarea.chat-textarea';
    await page.waitForSelector(textarea, { visible: true, timeout: left() });

    // The history, from the archive: shown once the archive's page is (the first HISTORY come
    // from nowhere else), before alice writes.
    const messages = 'converse-chat[jid="bob@localhost"] .chat-msg';
    const shownNow = () =>
      page!.$$eval(messages, (els) =>
        els.map((e) => ({
          from: e.getAttribute("data-from"),
          text: e.querySelector(".chat-msg__text")?.textContent?.trim(),
        })));
    const texts = JSON.stringify(history.map((m) => m.text));
    await page.waitForFunction(
      `(() => {
        const shown = [...document.querySelectorAll(${JSON.stringify(messages)})]
          .map((e) => e.querySelector(".chat-msg__text")?.textContent?.trim());
        return ${texts}.every((t) => shown.includes(t));
      })()`,
      { timeout: left() },
    ).catch(async (e) => {
      throw new Error(`the history did not show: ${JSON.stringify(await shownNow())}`, {
        cause: e,
      });
    });
    const hello = `hello bob from Converse over ${transport} ${tag}`;
    await page.type(textarea, hello);
    await page.keyboard.press("Enter");

    // bob, on the other node, gets it from alice's browser resource.
    const got = await bob.waitFor(
      (el) => el.name === "message" && el.childText("body") === hello,
      left(),
      "alice's message from Converse",
    );
    assert.equal(got.attrs.from, "alice@localhost/browser");
    assert.equal(got.attrs.type, "chat");

    const reply = `hi alice, bob on n2 here ${tag}`;
    bob.send(
      `<message to='alice@localhost/browser' type='chat' id='reply-${tag}'>` +
        `<body>${reply}</body></message>`,
    );
    // The reply is rendered in the chat with bob, from bob, after alice's own message, both
    // after the history, each message once. (Converse handles what it receives one message at a
    // time, in order: the reply shown, the archive's page and the offline messages, received
    // before it, are handled.)
    await page.waitForSelector(`${messages}[data-msgid="reply-${tag}"] .chat-msg__text`, {
      timeout: left(),
    });
    const shown = await shownNow();
    assert.deepEqual(shown.filter((m) => m.text?.endsWith(tag)), [
      ...history,
      { from: "alice@localhost/browser", text: hello },
      { from: "bob@localhost/desk", text: reply },
    ]);
    // Converse got the offline messages live, and every message of the history in the
    // archive's results, each with one stanza id (by alice's bare JID) wherever it came from,
    // and showed each once. (Converse 14 may send the same query several times: offline
    // messages arriving together each set up a chat with bob, until the first is set up, and
    // each of those chats queries the archive.)
    const probe = await page.evaluate(() =>
      (globalThis as unknown as { parleyProbe: { live: Parsed[]; archived: Parsed[] } })
        .parleyProbe
    );
    const idOf = (p: Parsed) => p.ids["stanza_id alice@localhost"];
    const ids = new Set<string>();
    for (const [k, m] of history.entries()) {
      const archived = probe.archived.filter((p) => p.body === m.text);
      const live = probe.live.filter((p) => p.body === m.text);
      const got = JSON.stringify({ archived, live });
      assert.ok(archived.length > 0, `${m.text} not in the archive's results: ${got}`);
      assert.equal(live.length, k < HISTORY ? 0 : 1, `${m.text} live: ${got}`);
      assert.ok(live.every((p) => p.delayed), `${m.text} came live without <delay/>: ${got}`);
      const sids = new Set([...archived, ...live].map(idOf));
      assert.equal(sids.size, 1, `${m.text} with several stanza ids: ${got}`);
      const [id] = sids;
      assert.ok(id && !ids.has(id), `${m.text}: stanza id ${id} missing or not unique: ${got}`);
      ids.add(id);
    }
    // And it went the way it was told (a WebSocket's frames are no page responses).
    if (transport === "bosh") assert.ok(boshAnswers > 0, "no BOSH request answered");
    else assert.equal(boshAnswers, 0);
    ok = true;
  } finally {
    if (page) {
      try {
        const shot = await artifactPath(`converse-${transport}.png`);
        await page.screenshot({ path: shot as `${string}.png` });
        console.log(`screenshot of Converse over ${transport}: ${shot}`);
      } catch (e) {
        console.log(`no screenshot: ${e}`);
      }
    }
    if (!ok && consoleLines.length) {
      console.log(`the browser's console (last 40 lines):\n${consoleLines.slice(-40).join("\n")}`);
    }
    if (browser) await closeBrowser(browser);
    await web?.server.shutdown();
    bob?.close();
    await c.stop();
  }
}

clusterTest(
  "Converse.js 14 in Chromium over WebSocket: the history from the archive (XEP-0313), offline messages once, then a chat with a TCP client on another node",
  () => converseChat("websocket"),
);

clusterTest(
  "Converse.js 14 in Chromium over BOSH: the history from the archive (XEP-0313), offline messages once, then a chat with a TCP client on another node",
  () => converseChat("bosh"),
);
