// An accept loop for Deno listeners that outlives failed accepts. `for await (… of listener)`
// ends at the first error, and running out of descriptors (EMFILE) is an error: that ended the
// proxy's and the admin socket's accepting for good. Here a failure is logged, accepting pauses
// briefly (the descriptors come back as connections close) and goes on.
import type { Logger } from "@logtape/logtape";

const BACKOFF_MS = 100;

/** Hands every accepted connection to `onConn` until the listener is closed. */
export async function acceptLoop<C extends Deno.Conn>(
  listener: Deno.Listener<C>,
  log: Logger,
  onConn: (conn: C) => void,
): Promise<void> {
  let failing = false;
  while (true) {
    let conn: C;
    try {
      conn = await listener.accept();
    } catch (e) {
      if (e instanceof Deno.errors.BadResource || e instanceof Deno.errors.Interrupted) return;
      // Once per episode: a flood of identical lines would only add to the trouble.
      if (!failing) log.warn("accept failed: {error}; retrying", { error: String(e) });
      failing = true;
      await new Promise((r) => setTimeout(r, BACKOFF_MS));
      continue;
    }
    if (failing) log.warn("accepting again");
    failing = false;
    onConn(conn);
  }
}
