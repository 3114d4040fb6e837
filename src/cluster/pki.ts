// The cluster's own PKI: a CA and one certificate per node, made with @peculiar/x509 over
// WebCrypto (no hand-written ASN.1, no openssl). Keys are ECDSA P-256: Deno's node:tls takes
// P-256 and Ed25519 alike for server and client certificates (both tried), but P-256 is what the
// hosts' self-signed certificates already use and what every TLS stack, HSM and FIPS policy
// accepts, so operators' tools (openssl, monitoring probes) read these files too.
import "reflect-metadata"; // @peculiar/x509 2.x needs it loaded first
import * as x509 from "@peculiar/x509";
import { join } from "node:path";
import { NODE_NAME } from "./config.ts";

const ALG = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
const YEAR_MS = 365 * 86_400_000;
const CA_YEARS = 20;
const NODE_YEARS = 10;

export const CA_CERT_FILE = "cluster-ca.pem";
export const CA_KEY_FILE = "cluster-ca.key";

export interface WrittenFiles {
  cert: string;
  key: string;
}

/** Creates a new cluster CA in `outDir`; refuses to replace an existing one. */
export async function caInit(outDir: string): Promise<WrittenFiles> {
  const files = { cert: join(outDir, CA_CERT_FILE), key: join(outDir, CA_KEY_FILE) };
  for (const f of [files.cert, files.key]) {
    if (await exists(f)) {
      throw new Error(`${f} exists: a new CA would lock every node out; remove it to start over`);
    }
  }
  const keys = await generateKeys();
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: "CN=Parley cluster CA",
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + CA_YEARS * YEAR_MS),
    keys,
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
        true,
      ),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  await writeCredentials(outDir, files, cert, keys.privateKey);
  return files;
}

/**
 * Issues the certificate of node `node` with the CA in `caDir`, into `outDir`/NODE.pem and
 * NODE.key: subject CN and dNSName are the node name (what a peer checks), usable for TLS server
 * and client authentication alike, since every node both dials and accepts.
 */
export async function certIssue(
  node: string,
  caDir: string,
  outDir: string,
): Promise<WrittenFiles> {
  if (!NODE_NAME.test(node)) {
    throw new Error(`"${node}" is not a node name (lower-case letters, digits and "-", 1-63)`);
  }
  const ca = new x509.X509Certificate(await readCa(join(caDir, CA_CERT_FILE)));
  const caKey = await crypto.subtle.importKey(
    "pkcs8",
    x509.PemConverter.decodeFirst(await readCa(join(caDir, CA_KEY_FILE))),
    ALG,
    false,
    ["sign"],
  );
  const keys = await generateKeys();
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${node}`,
    issuer: ca.subject,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(Math.min(now + NODE_YEARS * YEAR_MS, ca.notAfter.getTime())),
    signingKey: caKey,
    publicKey: keys.publicKey,
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([
        x509.ExtendedKeyUsage.serverAuth,
        x509.ExtendedKeyUsage.clientAuth,
      ]),
      new x509.SubjectAlternativeNameExtension([{ type: "dns", value: node }]),
      await x509.AuthorityKeyIdentifierExtension.create(ca),
    ],
  });
  const files = { cert: join(outDir, `${node}.pem`), key: join(outDir, `${node}.key`) };
  await writeCredentials(outDir, files, cert, keys.privateKey);
  return files;
}

function generateKeys(): Promise<CryptoKeyPair> {
  return crypto.subtle.generateKey(ALG, true, ["sign", "verify"]) as Promise<CryptoKeyPair>;
}

/** A random positive 128-bit serial number (RFC 5280 §4.1.2.2). */
function serial(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[0] &= 0x7f;
  bytes[0] |= 0x01;
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function readCa(path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    const why = e instanceof Deno.errors.NotFound ? "no such file" : (e as Error).message;
    throw new Error(`cannot read the cluster CA (${path}): ${why}`);
  }
}

/** Writes the certificate, and the key readable by its owner only (created so, never widened). */
async function writeCredentials(
  dir: string,
  files: WrittenFiles,
  cert: x509.X509Certificate,
  key: CryptoKey,
): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  const pkcs8 = await crypto.subtle.exportKey("pkcs8", key);
  await Deno.remove(files.key).catch(() => {});
  await Deno.writeTextFile(files.key, x509.PemConverter.encode(pkcs8, "PRIVATE KEY"), {
    mode: 0o600,
    createNew: true,
  });
  await Deno.writeTextFile(files.cert, cert.toString("pem"));
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}
