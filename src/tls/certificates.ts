// TLS contexts per virtual host: the configured PEM files, or a self-signed certificate generated
// on first start and kept in <data_dir>/certs so clients can pin it across restarts.
import tls from "node:tls";
import { join } from "node:path";
import selfsigned from "selfsigned";
import type { Config } from "../config/schema.ts";
import { logger } from "../log/logger.ts";

const log = logger("tls");

export class TlsContexts {
  #byDomain = new Map<string, tls.SecureContext>();
  #default: tls.SecureContext | undefined;

  get(domain: string): tls.SecureContext | undefined {
    return this.#byDomain.get(domain);
  }

  /** The context for a requested server name (SNI on direct TLS, XEP-0368), or the default. */
  select(name?: string): tls.SecureContext {
    return (name && this.#byDomain.get(name.toLowerCase())) || this.#default!;
  }

  static async load(config: Config): Promise<TlsContexts> {
    const out = new TlsContexts();
    for (const host of config.hosts) {
      const files = host.certificate ?? await selfSignedFiles(config.data_dir, host.domain);
      const ctx = tls.createSecureContext({
        cert: await Deno.readTextFile(files.cert),
        key: await Deno.readTextFile(files.key),
        minVersion: "TLSv1.2",
      });
      out.#byDomain.set(host.domain, ctx);
      out.#default ??= ctx;
    }
    return out;
  }
}

async function selfSignedFiles(
  dataDir: string,
  domain: string,
): Promise<{ cert: string; key: string }> {
  const dir = join(dataDir, "certs");
  const files = { cert: join(dir, `${domain}.crt`), key: join(dir, `${domain}.key`) };
  try {
    await Deno.stat(files.cert);
    await Deno.stat(files.key);
  } catch {
    log.warn(
      "no certificate configured for {domain}: generated a self-signed one in {dir}; clients will not trust it",
      { domain, dir },
    );
    const pems = await selfsigned.generate([{ name: "commonName", value: domain }], {
      notAfterDate: new Date(Date.now() + 10 * 365 * 86_400_000),
      keyType: "ec",
      curve: "P-256",
      algorithm: "sha256",
      extensions: [{ name: "subjectAltName", altNames: [{ type: 2, value: domain }] }],
    });
    await Deno.mkdir(dir, { recursive: true });
    await Deno.writeTextFile(files.key, pems.private, { mode: 0o600 });
    await Deno.writeTextFile(files.cert, pems.cert);
    return files;
  }
  log.warn("using the self-signed certificate {cert} for {domain}", { cert: files.cert, domain });
  return files;
}
