// `parley cluster ca init --out DIR` and `parley cluster cert issue NODE --ca DIR --out DIR`.
import { parseArgs } from "node:util";
import { caInit, certIssue } from "../cluster/pki.ts";

export const CLUSTER_USAGE = `Usage:
  parley cluster ca init --out DIR             a new cluster CA: DIR/cluster-ca.pem and .key
  parley cluster cert issue NODE --ca DIR --out DIR
                                               the certificate of node NODE: DIR/NODE.pem and .key`;

/** Runs a `parley cluster …` command (`args` after "cluster"); returns the exit code. */
export async function clusterCommand(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: { out: { type: "string" }, ca: { type: "string" } },
    });
  } catch (e) {
    console.error(`${(e as Error).message}\n${CLUSTER_USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  const command = positionals.slice(0, 2).join(" ");
  try {
    if (command === "ca init" && positionals.length === 2 && values.out) {
      const files = await caInit(values.out);
      console.log(`cluster CA written: ${files.cert} (give it to every node)`);
      console.log(
        `CA key written: ${files.key} (keep it off the nodes; it issues node certificates)`,
      );
      return 0;
    }
    if (command === "cert issue" && positionals.length === 3 && values.ca && values.out) {
      const files = await certIssue(positionals[2], values.ca, values.out);
      console.log(`certificate of node ${positionals[2]} written: ${files.cert} and ${files.key}`);
      return 0;
    }
  } catch (e) {
    console.error(`error: ${(e as Error).message}`);
    return 1;
  }
  console.error(CLUSTER_USAGE);
  return 2;
}
