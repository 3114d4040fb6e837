// The command line as operators use it, in separate processes.
import assert from "node:assert/strict";
import { join } from "node:path";
import { RawClient } from "../helpers/raw_client.ts";
import { logged, parley, parleyOnTerminal, serveProcess } from "../helpers/process.ts";
import { serverTest } from "../helpers/server.ts";
import { mamQuery } from "../helpers/mam.ts";
import { eventually } from "../helpers/until.ts";
import { NS } from "../../src/xml/ns.ts";

async function writeConfig(extra = ""): Promise<{ file: string; dir: string }> {
  const dir = await Deno.makeTempDir({ prefix: "parley-cli-" });
  const file = join(dir, "parley.yaml");
  await Deno.writeTextFile(
    file,
    `data_dir: ${dir}
log: { level: info }
auth: { scram_iterations: 64 }
listeners:
  - { type: c2s, bind: 127.0.0.1, port: 0 }
  - { type: c2s_tls, bind: 127.0.0.1, port: 0 }
${extra}`,
  );
  return { file, dir };
}

/** `parley user passwd zoe@localhost` on a terminal, typing `first` and `again` at the prompts. */
async function passwdOnTerminal(configFile: string, first: string, again: string) {
  const session = parleyOnTerminal(["user", "passwd", "zoe@localhost", "--config", configFile]);
  await session.expect("Password: ");
  await session.type(first);
  await session.expect("Repeat the password: ");
  await session.type(again);
  return await session.finish();
}

Deno.test("parley version and config check", async () => {
  const v = await parley(["version"]);
  assert.equal(v.code, 0);
  assert.match(v.stdout, /^parley \d+\.\d+\.\d+/);
  const { file } = await writeConfig();
  const ok = await parley(["config", "check", file]);
  assert.equal(ok.code, 0, ok.stderr);
  await Deno.writeTextFile(file, "hosts:\n  - domain: example.org\n    regstration: true\n");
  const bad = await parley(["config", "check", file]);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, new RegExp(`${file}:3:5: hosts\\[0\\]\\.regstration: unknown key`));
  const usage = await parley(["frobnicate"]);
  assert.equal(usage.code, 2);
});

serverTest(
  "user add/passwd/list/del work while the server runs; SIGTERM closes streams with system-shutdown",
  async () => {
    const { file } = await writeConfig();
    const srv = await serveProcess(file);
    try {
      const [port] = srv.ports;
      const add = await parley(["user", "add", "zoe@localhost", "--config", file], "first pass\n");
      assert.equal(add.code, 0, add.stderr);
      const dup = await parley([
        "user",
        "add",
        "zoe@localhost",
        "--password",
        "x",
        "--config",
        file,
      ]);
      assert.equal(dup.code, 1);
      const c = await RawClient.login(port, "zoe", "first pass");
      // On a terminal the password is typed twice, never shown (line editing still works).
      const typed = await passwdOnTerminal(file, "secoX\x7fnd\r", "second\r");
      assert.equal(typed.code, 0, typed.output);
      assert.match(typed.output, /changed the password of zoe@localhost/);
      assert.ok(!/seco|second/.test(typed.output), `password shown: ${typed.output}`);
      const refused = await passwdOnTerminal(file, "third\r", "thrid\r");
      assert.equal(refused.code, 1);
      assert.match(refused.output, /error: the passwords do not match/);
      const c2 = await RawClient.login(port, "zoe", "second", { resource: "two" });
      await assert.rejects(RawClient.login(port, "zoe", "first pass"));
      // Two messages to herself: one archive entry each (XEP-0313), removed with the account.
      for (const body of ["one", "two"]) {
        c.send(`<message to='zoe@localhost/two' type='chat'><body>${body}</body></message>`);
        await c2.waitFor((e) => e.childText("body") === body);
      }
      await eventually(
        async () => (await mamQuery(c2, { max: 0 })).count === 2,
        "two archived messages",
      );
      const list = await parley(["user", "list", "--config", file]);
      assert.equal(list.stdout.trim(), "zoe@localhost");
      // Graceful shutdown.
      srv.child.kill("SIGTERM");
      for (const client of [c, c2]) {
        const err = await client.streamError(10_000);
        assert.ok(err.child("system-shutdown", NS.streamErrors));
      }
      const status = await srv.exited;
      assert.equal(status.code, 0);
      // Logs: authentication success and failure were recorded, never the password.
      const text = srv.logs.map((l) => JSON.stringify(l)).join("\n");
      assert.match(text, /authenticated zoe@localhost on /);
      assert.match(text, /authentication failed \(not-authorized, attempt 1\)/);
      assert.match(text, /stream error system-shutdown on /);
      // Every message reads with its values in place, none left as a {placeholder}.
      const unfilled = srv.logs.filter((l) => /\{[\w.]+\}/.test(String(l.message)));
      assert.deepEqual(unfilled, []);
      assert.ok(!text.includes("first pass") && !text.includes("second"), "passwords never logged");
      // Data is still there after the restart.
      const del = await parley(["user", "del", "zoe@localhost", "--config", file]);
      assert.equal(del.code, 0, del.stderr);
      assert.equal(del.stdout.trim(), "deleted zoe@localhost and 2 archived messages");
      assert.equal((await parley(["user", "list", "--config", file])).stdout.trim(), "");
    } finally {
      try {
        srv.child.kill("SIGKILL");
      } catch { /* already gone */ }
      await srv.exited;
    }
  },
);

Deno.test("config check: a missing file, a YAML syntax error, no listeners: each said plainly", async () => {
  const { file, dir } = await writeConfig();
  const missing = await parley(["config", "check", join(dir, "nope.yaml")]);
  assert.equal(missing.code, 1);
  assert.equal(
    missing.stderr.trim(),
    `${join(dir, "nope.yaml")}: cannot read the configuration: no such file`,
  );
  await Deno.writeTextFile(file, "hosts:\n  - domain: a: b\n");
  const syntax = await parley(["config", "check", file]);
  assert.equal(syntax.code, 1);
  assert.equal(
    syntax.stderr.trim(),
    `${file}:2:13: invalid YAML: Nested mappings are not allowed in compact mappings`,
  );
  await Deno.writeTextFile(file, "listeners: []\n");
  const none = await parley(["config", "check", file]);
  assert.equal(none.code, 1);
  assert.equal(none.stderr.trim(), `${file}:1:12: listeners: needs at least 1 entry`);
  await Deno.remove(dir, { recursive: true });
});

serverTest(
  "serve logs the open file limit raised to the hard one, keeps its PID in data_dir/parley.pid " +
    "(replacing a stale one) until SIGTERM; rooms and components say when there are none",
  async () => {
    const { file, dir } = await writeConfig(
      "hosts: [{ domain: localhost, muc: { domain: conference.localhost } }]",
    );
    const pidPath = join(dir, "parley.pid");
    await Deno.writeTextFile(pidPath, "4194304\n"); // left by a crash
    const srv = await serveProcess(file, ["prlimit", "--nofile=256:4096"]);
    try {
      const limit = await logged(srv, /^open file limit/);
      assert.equal(limit.message, "open file limit 4096 (hard limit 4096)");
      // prlimit execs the server, so the child's PID is the server's.
      await logged(srv, /^process id/);
      assert.equal(await Deno.readTextFile(pidPath), `${srv.child.pid}\n`);
      const rooms = await parley(["rooms", "--config", file]);
      assert.equal(rooms.code, 0, rooms.stderr);
      assert.equal(rooms.stdout, "no chat rooms\n");
      const components = await parley(["components", "--config", file]);
      assert.equal(components.code, 0, components.stderr);
      assert.equal(components.stdout, "no external components are configured\n");
      Deno.kill(Number((await Deno.readTextFile(pidPath)).trim()), "SIGTERM");
      assert.equal((await srv.exited).code, 0);
      await assert.rejects(Deno.stat(pidPath), Deno.errors.NotFound);
    } finally {
      try {
        srv.child.kill("SIGKILL");
      } catch { /* already gone */ }
      await srv.exited;
      await Deno.remove(dir, { recursive: true });
    }
  },
);
