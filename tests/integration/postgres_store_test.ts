// Servers on a shared PostgreSQL store (a throwaway one, tests/helpers/postgres.ts): the account
// CLI with no server running, one secret for every node, and an outage and a restart of the
// database under a running server.
import assert from "node:assert/strict";
import { join } from "node:path";
import { RawClient } from "../helpers/raw_client.ts";
import { parley } from "../helpers/process.ts";
import { serverTest, startServer } from "../helpers/server.ts";
import { sharedPostgres } from "../helpers/postgres.ts";
import { errorOf, STORE_DOWN } from "../helpers/stanza_errors.ts";
import { NS } from "../../src/xml/ns.ts";

const pg = await sharedPostgres();

const storage = (url: string) => ({ storage: { type: "postgres", url } });
const login = (port: number, user: string, password = "secret") =>
  RawClient.login(port, user, password, { starttls: false, mech: "PLAIN" });
const ROSTER_GET = `<query xmlns='${NS.roster}'/>`;

Deno.test("parley user add|list|del work on the shared store with no server running", async () => {
  const url = await pg.database();
  const dir = await Deno.makeTempDir({ prefix: "parley-pg-cli-" });
  const file = join(dir, "parley.yaml");
  await Deno.writeTextFile(
    file,
    `data_dir: ${dir}\nauth: { scram_iterations: 64 }\nstorage: { type: postgres, url: "${url}" }\n`,
  );
  try {
    const add = await parley(["user", "add", "zoe@localhost", "--config", file], "pw\n");
    assert.equal(add.code, 0, add.stderr);
    assert.equal(
      (await parley(["user", "list", "--config", file])).stdout.trim(),
      "zoe@localhost",
    );
    // A node started afterwards sees the account.
    const t = await startServer(storage(url));
    try {
      (await login(t.port, "zoe", "pw")).close();
    } finally {
      await t.stop();
    }
    assert.equal((await parley(["user", "del", "zoe@localhost", "--config", file])).code, 0);
    assert.equal((await parley(["user", "list", "--config", file])).stdout.trim(), "");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

serverTest("nodes sharing the store share one secret, kept across restarts", async () => {
  const url = await pg.database();
  const n1 = await startServer(storage(url));
  const n2 = await startServer(storage(url));
  try {
    assert.equal(n1.server.secret.length, 32);
    assert.deepEqual(n2.server.secret, n1.server.secret);
    const again = await n1.restart();
    assert.deepEqual(again.server.secret, n2.server.secret);
    await again.stop();
  } finally {
    await n2.stop();
  }
});

serverTest(
  "a PostgreSQL outage: store requests wait, chat goes on, then all works again",
  async () => {
    const t = await startServer(storage(await pg.database()));
    const clients: RawClient[] = [];
    try {
      for (const u of ["ann", "bo", "cy"]) await t.addUser(u);
      const [ann, bo, cy] = await Promise.all(["ann", "bo", "cy"].map((u) => login(t.port, u)));
      clients.push(ann, bo, cy);
      for (const c of clients) c.send("<presence/>");
      let n = 0;
      const chat = async () => {
        const id = `m${++n}`;
        bo.send(`<message to='${cy.jid}' type='chat' id='${id}'><body>hi</body></message>`);
        await cy.waitFor((e) => e.name === "message" && e.attrs.id === id);
      };
      await chat();
      assert.equal((await ann.iq("get", ROSTER_GET)).attrs.type, "result");

      await pg.stop();
      try {
        assert.deepEqual(errorOf(await ann.iq("get", ROSTER_GET)), STORE_DOWN);
        assert.deepEqual(errorOf(await ann.iq("set", `<vCard xmlns='${NS.vcard}'/>`)), STORE_DOWN);
        for (let i = 0; i < 5; i++) await chat();
      } finally {
        await pg.start();
      }
      // The pool reconnects by itself: the next request works.
      assert.equal((await ann.iq("get", ROSTER_GET)).attrs.type, "result");
      await chat();
    } finally {
      for (const c of clients) c.close();
      await t.stop();
    }
  },
);
