// A raw connection for the SASL abuse tests: sends exact bytes from a chosen loopback address and
// waits for the server's SASL answers as text (cheaper than parsing, for thousands at once).
import net from "node:net";
import { HEADER } from "./raw_client.ts";

/** A SASL answer, a stream error, or the end of the connection. */
export const ANSWER =
  /<success[^>]*>|<challenge[\s\S]*?<\/challenge>|<failure[\s\S]*?<\/failure>|<stream:error[\s\S]*?<\/stream:error>/;

export interface SaslConnection {
  send(text: string): void;
  /** Everything the server sends, as it comes (the answers `next` waits for are cut from it). */
  onText(listener: (text: string) => void): void;
  /** The next answer, "closed" once the server closed, or "no answer" after `ms`. */
  next(ms?: number): Promise<string>;
  close(): void;
}

/** Connects from `localAddress` and sends the stream header. */
export function saslConnection(port: number, localAddress: string): SaslConnection {
  const s = net.connect({ port, host: "127.0.0.1", localAddress });
  s.setEncoding("utf8");
  let text = "";
  let closed = false;
  let wake = () => {};
  s.on("data", (d: string) => {
    text += d;
    wake();
  });
  s.on("error", () => {});
  s.on("close", () => {
    closed = true;
    wake();
  });
  s.write(HEADER());
  const take = (): string | undefined => {
    const m = ANSWER.exec(text);
    if (m) {
      text = text.slice(m.index + m[0].length);
      return m[0];
    }
    if (closed) return "closed";
  };
  return {
    send: (t) => s.write(t),
    onText: (listener) => s.on("data", listener),
    next(ms = 10_000) {
      return new Promise((resolve) => {
        const timer = setTimeout(() => {
          wake = () => {};
          resolve("no answer");
        }, ms);
        wake = () => {
          const a = take();
          if (a === undefined) return;
          clearTimeout(timer);
          wake = () => {};
          resolve(a);
        };
        wake();
      });
    },
    close: () => s.destroy(),
  };
}
