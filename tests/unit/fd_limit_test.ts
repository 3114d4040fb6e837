import assert from "node:assert/strict";
import {
  descriptorLimit,
  descriptorLimits,
  raiseDescriptorLimit,
} from "../../src/server/fd_limit.ts";

const RLIMIT_NOFILE = 7;

/**
 * The test's own way to this process's limits (soft, hard), setting the soft one first if given:
 * Deno raises it at start, so the test lowers it to see Parley raise it.
 */
function rlimit(soft?: bigint): BigUint64Array {
  const lib = Deno.dlopen("libc.so.6", {
    getrlimit: { parameters: ["i32", "buffer"], result: "i32" },
    setrlimit: { parameters: ["i32", "buffer"], result: "i32" },
  });
  try {
    const limits = new BigUint64Array(2);
    assert.equal(lib.symbols.getrlimit(RLIMIT_NOFILE, limits), 0);
    if (soft !== undefined) {
      limits[0] = soft;
      assert.equal(lib.symbols.setrlimit(RLIMIT_NOFILE, limits), 0);
    }
    return limits;
  } finally {
    lib.close();
  }
}

Deno.test({
  name: "the soft open file limit is raised to the hard limit at start, and read back",
  ignore: Deno.build.os !== "linux",
  fn() {
    const { hard } = descriptorLimits()!;
    assert.ok(hard > 512 && hard < Infinity, `hard limit ${hard}`);
    rlimit(512n);
    try {
      raiseDescriptorLimit();
      assert.deepEqual([...rlimit()], [BigInt(hard), BigInt(hard)]);
      assert.equal(descriptorLimit(), hard);
    } finally {
      rlimit(BigInt(hard));
    }
  },
});
