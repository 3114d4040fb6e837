// The password for `parley user add|passwd` when --password is not given. On a terminal it is
// typed without echo and asked twice, as passwd(1) and other servers' tools do; piped in, it is
// the first line of standard input.

const CR = 0x0d;
const LF = 0x0a;
const CTRL_C = 0x03;
const CTRL_D = 0x04;
const CTRL_H = 0x08;
const CTRL_U = 0x15;
const DEL = 0x7f;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export async function readNewPassword(): Promise<string> {
  if (!Deno.stdin.isTerminal()) return await firstLine();
  // Raw mode: no echo and no line editing by the terminal (we do the little that matters); it
  // may turn off output processing too, hence "\r\n" below.
  Deno.stdin.setRaw(true);
  try {
    const keys = stdinBytes();
    const password = await hiddenLine(keys, "Password: ");
    if (await hiddenLine(keys, "Repeat the password: ") !== password) {
      throw new Error("the passwords do not match");
    }
    return password;
  } finally {
    Deno.stdin.setRaw(false);
  }
}

async function* stdinBytes(): AsyncGenerator<number> {
  const buf = new Uint8Array(256);
  for (let n; (n = await Deno.stdin.read(buf)) !== null;) yield* buf.subarray(0, n);
}

/** One line typed after `prompt`, not shown; Enter ends it, Ctrl-C or Ctrl-D cancels. */
async function hiddenLine(keys: AsyncGenerator<number>, prompt: string): Promise<string> {
  Deno.stderr.writeSync(encoder.encode(prompt));
  const line: number[] = [];
  try {
    while (true) {
      const { value: key, done } = await keys.next();
      if (done || key === CR || key === LF) return decoder.decode(new Uint8Array(line));
      if (key === CTRL_C || key === CTRL_D) throw new Error("cancelled");
      if (key === DEL || key === CTRL_H) {
        // Erase one character: its UTF-8 continuation bytes, then its first byte.
        while ((line.at(-1)! & 0xc0) === 0x80) line.pop();
        line.pop();
      } else if (key === CTRL_U) line.length = 0;
      else line.push(key);
    }
  } finally {
    Deno.stderr.writeSync(encoder.encode("\r\n"));
  }
}

/** The first line of piped standard input, however it is split into reads. */
async function firstLine(): Promise<string> {
  const chunks: Uint8Array<ArrayBuffer>[] = [];
  const buf = new Uint8Array(4096);
  for (let n; (n = await Deno.stdin.read(buf)) !== null;) {
    const chunk = buf.slice(0, n);
    chunks.push(chunk);
    if (chunk.includes(LF)) break;
  }
  return (await new Blob(chunks).text()).split(/\r?\n/)[0];
}
