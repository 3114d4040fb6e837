// The transfers of the upload part of `deno task bench` (bench/upload.ts), one process per run
// pinned to the load core: HTTP PUTs and GETs of upload slots, or, for the plain TCP copies next to
// them, the same bytes to and from a peer of this script in `serve` mode (pinned to the server's
// core). The bytes sent are one 1 MiB buffer again and again: the client's own cost stays low.
// Prints {"phase":"start"} as the transfers begin, then {"bytes", "ms", "mibps"}.
//
// Argument (JSON): {"op": "put", "puts": [{"url", "headers"}], "bytes"} (each of `puts` at once,
// `bytes` each), {"op": "get", "urls": [...], "bytes"}, {"op": "tcp-put" | "tcp-get", "port",
// "bytes", "streams"}, or {"op": "serve"} (prints {"port"} and copies until killed).
import net from "node:net";

const MiB = 1 << 20;
const PIECE = new Uint8Array(MiB).map((_, i) => (i * 31) & 0xff);
const arg = JSON.parse(Deno.args[0]);

/** Writes `n` bytes of PIECE to `sock` as fast as it takes them. */
async function send(sock: net.Socket, n: number): Promise<void> {
  for (let left = n; left > 0 && !sock.destroyed;) {
    const piece = left >= MiB ? PIECE : PIECE.subarray(0, left);
    left -= piece.length;
    if (!sock.write(piece)) {
      await new Promise<void>((r) => {
        const done = () => {
          sock.off("drain", done).off("close", done);
          r();
        };
        sock.on("drain", done).on("close", done);
      });
    }
  }
}

function connect(port: number, host = "127.0.0.1"): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, host);
    sock.once("connect", () => resolve(sock)).once("error", reject);
  });
}

/** Everything the peer sends until it closes, as text (an HTTP answer). */
function answer(sock: net.Socket): Promise<string> {
  return new Promise((resolve) => {
    let text = "";
    sock.on("data", (d: Uint8Array) => text += new TextDecoder().decode(d));
    sock.on("close", () => resolve(text));
    sock.on("error", () => {});
  });
}

async function put(url: string, headers: Record<string, string>, n: number): Promise<void> {
  const u = new URL(url);
  const sock = await connect(Number(u.port), u.hostname);
  const done = answer(sock);
  const head = Object.entries({
    ...headers,
    "content-type": "application/octet-stream",
    "content-length": String(n),
    connection: "close",
  }).map(([k, v]) => `${k}: ${v}\r\n`).join("");
  sock.write(`PUT ${u.pathname} HTTP/1.1\r\nhost: ${u.host}\r\n${head}\r\n`);
  await send(sock, n);
  const text = await done;
  if (!text.startsWith("HTTP/1.1 201")) throw new Error(`PUT ${url}: ${text.slice(0, 200)}`);
}

async function get(url: string, n: number): Promise<void> {
  const res = await fetch(url);
  if (res.status !== 200) throw new Error(`GET ${url}: ${res.status}`);
  let got = 0;
  for await (const chunk of res.body!) got += chunk.length;
  if (got !== n) throw new Error(`GET ${url}: ${got} bytes of ${n}`);
}

async function tcp(op: "tcp-put" | "tcp-get", port: number, n: number): Promise<void> {
  const sock = await connect(port);
  sock.write(`${op === "tcp-put" ? "PUT" : "GET"} ${n}\n`);
  if (op === "tcp-put") {
    const done = answer(sock);
    await send(sock, n);
    if ((await done) !== "ok\n") throw new Error("the copy's peer did not take every byte");
    return;
  }
  let got = 0;
  await new Promise<void>((resolve, reject) => {
    sock.on("data", (d: Uint8Array) => got += d.length);
    sock.on("close", () => got === n ? resolve() : reject(new Error(`${got} bytes of ${n}`)));
    sock.on("error", reject);
  });
}

/** The peer of the plain copies: takes PUT n and answers ok, or sends n bytes for GET n. */
function serve(): void {
  const server = net.createServer((sock) => {
    let head = "";
    let left = -1;
    sock.on("error", () => {});
    sock.on("data", (d: Uint8Array) => {
      if (left < 0) {
        head += new TextDecoder().decode(d.subarray(0, 64));
        const nl = head.indexOf("\n");
        if (nl < 0) return;
        const [op, n] = head.slice(0, nl).split(" ");
        if (op === "GET") return void send(sock, Number(n)).then(() => sock.end());
        left = Number(n) - (d.length - (nl + 1));
      } else left -= d.length;
      if (left === 0) sock.end("ok\n");
    });
  });
  server.listen(0, "127.0.0.1", () => {
    console.log(JSON.stringify({ port: (server.address() as net.AddressInfo).port }));
  });
}

if (arg.op === "serve") serve();
else {
  const n: number = arg.bytes;
  const work = (): Promise<void>[] => {
    switch (arg.op) {
      case "put":
        return arg.puts.map((p: { url: string; headers: Record<string, string> }) =>
          put(p.url, p.headers, n)
        );
      case "get":
        return arg.urls.map((u: string) => get(u, n));
      default:
        return Array.from({ length: arg.streams ?? 1 }, () => tcp(arg.op, arg.port, n));
    }
  };
  console.log(JSON.stringify({ phase: "start" }));
  const t0 = performance.now();
  const runs = work();
  await Promise.all(runs);
  const ms = performance.now() - t0;
  const bytes = n * runs.length;
  console.log(JSON.stringify({ bytes, ms, mibps: bytes / MiB / (ms / 1000) }));
}
