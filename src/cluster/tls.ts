// Mutual TLS between nodes: TLS 1.3, the cluster CA as the only trust anchor, a certificate
// required from both sides, and a node's name bound to its certificate (its one dNSName). There
// is no option to turn any of this off.
import type tls from "node:tls";
import { logger } from "../log/logger.ts";

const log = logger("cluster");

/** PEM texts of the cluster CA and of this node's certificate and key. */
export interface ClusterTls {
  ca: string;
  cert: string;
  key: string;
}

export async function readClusterTls(files: ClusterTls): Promise<ClusterTls> {
  const [ca, cert, key] = await Promise.all(
    [files.ca, files.cert, files.key].map((f) => Deno.readTextFile(f)),
  );
  return { ca, cert, key };
}

export function serverOptions(creds: ClusterTls): tls.TlsOptions {
  return { ...creds, minVersion: "TLSv1.3", requestCert: true, rejectUnauthorized: true };
}

/** Options to dial `node` at `address`: its certificate must name it, whatever the address. */
export function clientOptions(
  creds: ClusterTls,
  node: string,
  address: string,
): tls.ConnectionOptions {
  return {
    ...creds,
    minVersion: "TLSv1.3",
    rejectUnauthorized: true,
    servername: node,
    checkServerIdentity: (_host, cert) => {
      const named = certNodeName(cert) ?? "no node";
      if (named === node) return undefined;
      log.warn("refused {address} as {node}: its certificate names {named}", {
        address,
        node,
        named,
      });
      return new Error(`its certificate names ${named}, not ${node}`);
    },
  };
}

/** The node a peer certificate names: its only dNSName, which must equal its CN. */
export function certNodeName(cert: tls.PeerCertificate | undefined): string | undefined {
  const sans = cert?.subjectaltname?.split(", ") ?? [];
  if (sans.length !== 1 || !sans[0].startsWith("DNS:")) return undefined;
  const name = sans[0].slice(4);
  return cert!.subject?.CN === name ? name : undefined;
}

/** Why a TLS handshake failed, in words an operator can act on. */
export function handshakeFailure(e: Error & { code?: string }, socket?: tls.TLSSocket): string {
  // Deno's node:tls reports a client certificate the CA did not sign as "socket hang up"; the
  // verification result is on the socket.
  const code = socket?.authorizationError ?? e.code ?? "";
  if (/UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER|SELF_SIGNED|CERT_SIGNATURE/.test(String(code))) {
    return `its certificate is not issued by the cluster CA (${code})`;
  }
  if (code === "ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE") return "it sent no certificate";
  if (code === "ERR_SSL_WRONG_VERSION_NUMBER") return "it does not speak TLS (plaintext?)";
  if (/EXPIRED|NOT_YET_VALID/.test(String(code))) {
    return `its certificate is not valid now (${code})`;
  }
  if (/^ERR_SSL_.*ALERT/.test(String(code))) {
    return `it ended the handshake, as a node of another cluster would (${e.message})`;
  }
  return code ? `${e.message} (${code})` : e.message;
}
