// A minimal XMPP-over-WebSocket client (RFC 7395) on Deno's built-in WebSocket for the load
// generator: SASL PLAIN (the benchmark's http listener allows it without TLS), bind, then every
// message the server sends handed over as text, unparsed. Each element goes out as a WebSocket
// message of its own, as the RFC wants.
import { NS } from "../src/xml/ns.ts";

const OPEN = "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>";
/** Longest each step of a login (connecting, SASL, bind) may take. */
const STEP_MS = 30_000;

export class WsClient {
  #fn: (text: string) => void = () => {};

  private constructor(readonly ws: WebSocket) {
    ws.onmessage = (e) => this.#fn(e.data);
  }

  static async login(port: number, user: string, password: string, resource: string) {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/xmpp-websocket`, "xmpp");
    const c = new WsClient(ws);
    await c.#step(
      (done, fail) => {
        ws.onopen = () => done();
        ws.onerror = () => fail("the WebSocket was refused");
      },
      "connecting",
    );
    c.send(OPEN);
    c.send(`<auth xmlns='${NS.sasl}' mechanism='PLAIN'>${btoa(`\0${user}\0${password}`)}</auth>`);
    await c.#until("<success");
    c.send(OPEN);
    c.send(
      `<iq type='set' id='bind'><bind xmlns='${NS.bind}'><resource>${resource}</resource></bind></iq>`,
    );
    if (!(await c.#until("</iq>")).includes("<jid>")) throw new Error(`bind failed for ${user}`);
    return c;
  }

  /** Sends `stanza` `times` times, a message each. */
  send(stanza: string, times = 1): void {
    for (let k = 0; k < times; k++) this.ws.send(stanza);
  }

  /** From now on `fn` gets each message's text as it arrives. */
  onMessages(fn: (text: string) => void): void {
    this.#fn = fn;
  }

  /** Login only: waits for a message containing `marker` (skipping others); its text. */
  #until(marker: string): Promise<string> {
    return this.#step((done, fail) => {
      this.#fn = (text) => {
        if (text.includes("<failure") || text.includes("<stream:error")) fail(text);
        else if (text.includes(marker)) done(text);
      };
    }, marker);
  }

  /** A login step `start` ends with done or fail, or fails after STEP_MS or when closed. */
  #step(
    start: (done: (text?: string) => void, fail: (why: string) => void) => void,
    what: string,
  ): Promise<string> {
    return new Promise((resolve, reject) => {
      const end = () => {
        clearTimeout(timer);
        this.#fn = () => {};
        this.ws.onclose = null;
        this.ws.onerror = null;
      };
      const fail = (why: string) => {
        end();
        this.ws.close();
        reject(new Error(`WebSocket login, ${what}: ${why}`));
      };
      const timer = setTimeout(() => fail("timed out"), STEP_MS);
      this.ws.onclose = () => fail("closed");
      start((text = "") => {
        end();
        resolve(text);
      }, fail);
    });
  }
}
