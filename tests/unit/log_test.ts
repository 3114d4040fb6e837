import assert from "node:assert/strict";
import { getLogger } from "@logtape/logtape";
import { captureLogs } from "../helpers/logs.ts";
import { formatLine } from "../../src/log/logger.ts";

Deno.test("log lines carry the message with its values filled in, and the values as properties", () => {
  const { records, release } = captureLogs();
  try {
    getLogger(["parley", "test"]).info("connection {id} of {jid} closed after {bytes} bytes", {
      id: "c2s-7",
      jid: "alice@localhost/phone",
      bytes: 1024,
    });
  } finally {
    release();
  }
  const line = JSON.parse(formatLine(records[0]));
  assert.equal(line.message, "connection c2s-7 of alice@localhost/phone closed after 1024 bytes");
  assert.deepEqual(line.properties, { id: "c2s-7", jid: "alice@localhost/phone", bytes: 1024 });
  assert.equal(line.level, "INFO");
  assert.equal(line.logger, "parley.test");
});

/** Log calls in the sources: `log.info("template", { … })`, `this.log.debug(…)`. */
const LOG_CALL = /\b[\w.#]*\blog\.(?:trace|debug|info|warn|warning|error|fatal)\(\s*/gi;

/** The names an object literal starting at `text[start]` ("{") gives at its top level. */
function objectKeys(text: string, start: number): string[] {
  const keys: string[] = [];
  let depth = 0;
  let expectKey = false;
  for (let i = start; i < text.length; i++) {
    const c = text[i];
    if (c === '"' || c === "'" || c === "`") {
      i = text.indexOf(c, i + 1); // no escaped quotes in log calls' property values
      continue;
    }
    if ("{([".includes(c)) {
      depth++;
      expectKey = depth === 1;
    } else if ("})]".includes(c)) {
      if (--depth === 0) return keys;
    } else if (depth === 1 && c === ",") {
      expectKey = true;
    } else if (expectKey && !/\s/.test(c)) {
      expectKey = false;
      const key = /^(?:\.\.\.)?[\w$]+/.exec(text.slice(i))?.[0];
      if (key) keys.push(key);
    }
  }
  return keys;
}

Deno.test("every placeholder of every log call in src/ names a property the call passes", async () => {
  const root = new URL("../../", import.meta.url);
  const files = ["main.ts"];
  const walk = async (dir: string): Promise<void> => {
    for await (const e of Deno.readDir(new URL(dir, root))) {
      if (e.isDirectory) await walk(`${dir}${e.name}/`);
      else if (e.name.endsWith(".ts")) files.push(`${dir}${e.name}`);
    }
  };
  await walk("src/");
  const problems: string[] = [];
  let calls = 0;
  for (const file of files) {
    const text = await Deno.readTextFile(new URL(file, root));
    for (const m of text.matchAll(LOG_CALL)) {
      calls++;
      const at = m.index + m[0].length;
      const where = `${file}:${text.slice(0, at).split("\n").length}`;
      // The message: one string literal, or several joined with "+".
      const literal = /^"(?:[^"\\]|\\.)*"(?:\s*\+\s*"(?:[^"\\]|\\.)*")*\s*([,)])\s*/.exec(
        text.slice(at),
      );
      if (!literal) {
        problems.push(`${where}: the message is not a string literal`);
        continue;
      }
      const [whole, next] = literal;
      const template = [...whole.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]).join("");
      const rest = at + whole.length;
      if (next === "," && text[rest] !== "{" && text[rest] !== ")") {
        problems.push(`${where}: properties are not an object literal`);
        continue;
      }
      const keys = next === "," && text[rest] === "{" ? objectKeys(text, rest) : [];
      if (keys.some((k) => k.startsWith("..."))) continue;
      const names = template.replaceAll(/\{\{|\}\}/g, "").matchAll(/\{([^{}]*)\}/g);
      for (const [, name] of names) {
        const property = name.trim().split(/[.[]/)[0];
        if (!keys.includes(property)) problems.push(`${where}: "{${name}}" has no property`);
      }
    }
  }
  assert.ok(calls > 20, `found only ${calls} log calls: the pattern no longer matches them`);
  assert.deepEqual(problems, []);
});
