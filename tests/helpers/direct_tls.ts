// Logging in on the direct-TLS port (XEP-0368): TLS first, then PLAIN and bind.
import { RawClient } from "./raw_client.ts";

export async function loginDirectTls(port: number, user: string): Promise<RawClient> {
  const c = await RawClient.connect(port, { tls: true });
  try {
    await c.open();
    if (!await c.plain(user, "secret")) throw new Error(`login failed for ${user}`);
    await c.open();
    await c.bind();
    return c;
  } catch (e) {
    c.drop();
    throw e;
  }
}
