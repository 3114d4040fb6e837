// How a fatal error is described in its log line (the process: integration/fatal_error_test.ts).
import assert from "node:assert/strict";
import { describeError } from "../../src/log/fatal.ts";

Deno.test("describeError: an Error's name, message and stack; other values by type and text", () => {
  const e = new SyntaxError("bad");
  assert.deepEqual(describeError(e), { name: "SyntaxError", message: "bad", stack: e.stack });
  const bare = new Error("no stack");
  bare.stack = undefined;
  assert.deepEqual(describeError(bare), { name: "Error", message: "no stack" });
  assert.deepEqual(describeError("text"), { name: "string", message: "text" });
  assert.deepEqual(describeError(42), { name: "number", message: "42" });
  assert.deepEqual(describeError(null), { name: "null", message: "null" });
  assert.deepEqual(describeError(undefined), { name: "undefined", message: "undefined" });
  assert.deepEqual(describeError({ code: 7 }), { name: "object", message: '{"code":7}' });
  assert.deepEqual(describeError(10n), { name: "bigint", message: "10" });
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  assert.deepEqual(describeError(cyclic), { name: "object", message: "[object Object]" });
  const hostile = {
    toJSON() {
      throw new Error("no");
    },
    toString() {
      throw new Error("no");
    },
  };
  assert.deepEqual(describeError(hostile), { name: "object", message: "[object Object]" });
});
