// Abuse: ClientHellos trickled into the direct-TLS port. 100 connections from five loopback
// addresses send a record header claiming a 16 KiB ClientHello, then 1–3 bytes at a time every
// 5 ms. The listener reads the header once and copies the record into one buffer of that size,
// parsing it once it is whole; gathering and re-parsing everything on each piece made the cost
// grow with the square of what had arrived (a second and more of CPU here, and memory).
import assert from "node:assert/strict";
import net from "node:net";
import { abuseServer, MAX_STALL_MS, stallProbe } from "../helpers/abuse.ts";
import { serverTest } from "../helpers/server.ts";

const CONNECTIONS = 100;
const SECONDS = 6;
/** A handshake record header claiming 16,384 bytes, then a ClientHello's first bytes. */
const HEADER = new Uint8Array([0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x00, 0x3f, 0xfc]);

/** CPU seconds the process has used (user + system), from /proc. */
async function cpuSeconds(pid: number): Promise<number> {
  const stat = (await Deno.readTextFile(`/proc/${pid}/stat`)).split(") ")[1].split(" ");
  return (Number(stat[11]) + Number(stat[12])) / 100; // utime, stime in clock ticks (USER_HZ)
}

serverTest("abuse: a trickled ClientHello costs the server little", async () => {
  const server = await abuseServer({ timeouts: { tls_handshake: 60 } });
  const sockets: net.Socket[] = [];
  try {
    const probe = await stallProbe(server.port);
    await Promise.all(Array.from({ length: CONNECTIONS }, (_, i) =>
      new Promise<void>((resolve) => {
        const s = net.connect({
          port: server.tlsPort,
          host: "127.0.0.1",
          localAddress: `127.0.0.${2 + i % 5}`,
        });
        s.setNoDelay(true);
        s.on("error", () => {});
        s.once("connect", () => {
          s.write(HEADER);
          resolve();
        });
        sockets.push(s);
      })));
    const pid = server.child.pid;
    const cpuBefore = await cpuSeconds(pid);
    let sent = 0;
    const piece = new Uint8Array(3);
    const timer = setInterval(() => {
      for (const s of sockets) {
        const n = 1 + sent % 3;
        s.write(piece.subarray(0, n));
        sent += n;
      }
    }, 5);
    await new Promise((r) => setTimeout(r, SECONDS * 1000));
    clearInterval(timer);
    const cpu = await cpuSeconds(pid) - cpuBefore;
    const open = sockets.filter((s) => !s.destroyed).length;
    const { maxWaitMs } = await probe.stop();
    console.log(
      `${CONNECTIONS} connections trickled ${(sent / CONNECTIONS).toFixed(0)} bytes each in ` +
        `${SECONDS} s: server CPU ${cpu.toFixed(2)} s; longest wait ${maxWaitMs.toFixed(0)} ms`,
    );
    assert.equal(open, CONNECTIONS, "the trickling connections were still waiting");
    // Reading tens of thousands of small pieces costs something; re-parsing them costs seconds.
    assert.ok(cpu < SECONDS * 0.4, `the server used ${cpu.toFixed(2)} s of CPU`);
    assert.ok(maxWaitMs < MAX_STALL_MS, `a user waited ${maxWaitMs.toFixed(0)} ms for the server`);
  } finally {
    for (const s of sockets) s.destroy();
    await server.stop();
  }
});
