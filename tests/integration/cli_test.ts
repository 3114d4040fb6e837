// The command line as operators use it, in separate processes.
import assert from "node:assert/strict";
import { join } from "node:path";
import { RawClient } from "../helpers/raw_client.ts";
import { parley, serveProcess } from "../helpers/process.ts";
import { serverTest } from "../helpers/server.ts";
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
      const pw = await parley([
        "user",
        "passwd",
        "zoe@localhost",
        "--password",
        "second",
        "--config",
        file,
      ]);
      assert.equal(pw.code, 0, pw.stderr);
      const c2 = await RawClient.login(port, "zoe", "second", { resource: "two" });
      await assert.rejects(RawClient.login(port, "zoe", "first pass"));
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
      assert.match(text, /authenticated \{user\}/);
      assert.match(text, /authentication failed/);
      assert.match(text, /stream error \{condition\}/);
      assert.ok(!text.includes("first pass") && !text.includes("second"), "passwords never logged");
      // Data is still there after the restart.
      const del = await parley(["user", "del", "zoe@localhost", "--config", file]);
      assert.equal(del.code, 0, del.stderr);
      assert.equal((await parley(["user", "list", "--config", file])).stdout.trim(), "");
    } finally {
      try {
        srv.child.kill("SIGKILL");
      } catch { /* already gone */ }
      await srv.exited;
    }
  },
);
