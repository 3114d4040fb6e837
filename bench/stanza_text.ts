// What the benches' own generators read of a stream, cheaply (bench/pep_cluster.ts, bench/csi.ts):
// whole top-level stanzas as text, an attribute of a stanza's tag, and bounded waits.
import type { NativeClient } from "./native_client.ts";

const latin1 = new TextDecoder("latin1"); // only ASCII markup is looked at
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Reads `c`'s stream for good, from after its bind: `fn` gets each whole top-level stanza's text
 * (found by counting start and end tags: the server escapes `>` in attribute values) and the time
 * its last bytes arrived. Ends when the connection or the stream does.
 */
export async function readStanzas(
  c: NativeClient,
  fn: (stanza: string, now: number) => void,
): Promise<void> {
  const buf = new Uint8Array(1 << 16);
  let text = "";
  let pos = 0;
  let begin = 0;
  let depth = 0;
  while (true) {
    const n = await c.conn.read(buf).catch(() => null);
    if (n === null) return;
    const now = performance.now();
    text += latin1.decode(buf.subarray(0, n));
    let lt;
    while ((lt = text.indexOf("<", pos)) >= 0) {
      const gt = text.indexOf(">", lt);
      if (gt < 0) break;
      if (depth === 0) begin = lt;
      const next = text.charCodeAt(lt + 1);
      if (next === 47 /* / */) depth--;
      else if (next !== 63 /* ? */ && next !== 33 /* ! */ && text.charCodeAt(gt - 1) !== 47) {
        depth++;
      }
      pos = gt + 1;
      if (depth < 0) return; // </stream:stream>
      if (depth === 0) fn(text.slice(begin, pos), now);
    }
    const keep = depth === 0 ? pos : begin;
    text = text.slice(keep);
    pos -= keep;
    begin -= keep;
  }
}

/** An attribute's value in a tag, whichever quotes (the server writes double ones). */
export function attr(s: string, name: string, from = 0): string | undefined {
  const end = s.indexOf(">", from);
  for (const q of ['"', "'"]) {
    const at = s.indexOf(` ${name}=${q}`, from);
    if (at >= 0 && at < end) {
      const start = at + name.length + 3;
      return s.slice(start, s.indexOf(q, start));
    }
  }
  return undefined;
}

/** Rejects after `ms` unless `p` settled. */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Polls `done` every 10 ms until it holds or `ms` have passed; whether it held. */
export async function until(done: () => boolean, ms: number): Promise<boolean> {
  const deadline = performance.now() + ms;
  while (!done() && performance.now() < deadline) await sleep(10);
  return done();
}

/** A generator's result line on stdout (read by runGenerator and the benches' runners). */
export function out(line: Record<string, unknown>): void {
  console.log(JSON.stringify(line));
}
