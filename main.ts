// Parley's command line: serve, user add|passwd|del|list, upload list|purge, components, rooms,
// config check, version.
import { parseArgs } from "node:util";
import { ConfigError, defaultConfig, loadConfigFile } from "./src/config/load.ts";
import type { Config } from "./src/config/schema.ts";
import { logger, setupLogging } from "./src/log/logger.ts";
import { installFatalHandler } from "./src/log/fatal.ts";
import { Server } from "./src/server/server.ts";
import { raiseDescriptorLimit } from "./src/server/fd_limit.ts";
import { PidFile } from "./src/server/pid_file.ts";
import { userCommand } from "./src/cli/accounts.ts";
import { componentsCommand } from "./src/cli/components.ts";
import { roomsCommand } from "./src/cli/rooms.ts";
import { clusterCommand } from "./src/cli/cluster.ts";
import { uploadCommand } from "./src/cli/uploads.ts";
import { ANY_NODE } from "./src/cluster/config.ts";
import { VERSION } from "./src/version.ts";

const log = logger("server");

const USAGE = `Parley ${VERSION} — a clustered XMPP server

Usage:
  parley serve [--config FILE] [--node NAME]   run the server (defaults: localhost on 127.0.0.1)
  parley user add JID [--password P] [--config FILE]
  parley user passwd JID [--password P] [--config FILE]
  parley user del JID [--config FILE]
  parley user list [DOMAIN] [--config FILE]
  parley components [--json] [--config FILE] [--node NAME]
                                               instances of each external component, with traffic
  parley rooms [--json] [--room JID] [--config FILE] [--node NAME]
                                               chat rooms held by the running server (in a
                                               cluster: every node's, and which node runs JID)
  parley upload list JID [--json] [--config FILE]
                                               an account's uploaded files (XEP-0363)
  parley upload purge JID [--config FILE]      remove all of them
  parley config check FILE [--node NAME]       validate a configuration file
  parley cluster ca init --out DIR             a new cluster CA (cluster-ca.pem, cluster-ca.key)
  parley cluster cert issue NODE --ca DIR --out DIR
                                               a node certificate (NODE.pem, NODE.key)
  parley cluster status [--json] [--config FILE] [--node NAME]
                                               each member: link state, RTT, queue, sessions
  parley version

Without --password the password is asked twice on a terminal, without echo, or read from the
first line of standard input. The server's process id is in <data_dir>/parley.pid while it runs.`;

async function config(file: string | undefined, node?: string): Promise<Config> {
  return file ? await loadConfigFile(file, node) : defaultConfig();
}

async function serve(cfg: Config): Promise<number> {
  setupLogging(cfg.log.level);
  // From here an error nothing catches is one JSON log line of level fatal, then exit 1.
  installFatalHandler();
  raiseDescriptorLimit();
  const server = await Server.start(cfg);
  const pidFile = await PidFile.write(cfg.data_dir);
  log.info("process id {pid} written to {file}", {
    pid: Deno.pid,
    file: pidFile.path,
  });
  const done = Promise.withResolvers<void>();
  const stop = () => server.stop().then(() => pidFile.remove()).then(() => done.resolve());
  Deno.addSignalListener("SIGTERM", stop);
  Deno.addSignalListener("SIGINT", stop);
  await done.promise;
  return 0;
}

/**
 * `config check`: as the given node, or, for a file shared by the nodes of a cluster, as each of
 * them in turn (paths and addresses differ per node).
 */
async function checkConfig(file: string, node: string | undefined): Promise<number> {
  const cfg = await loadConfigFile(file, node ?? ANY_NODE);
  const nodes = node || !cfg.cluster ? [node] : cfg.cluster.peers.map((p) => p.node);
  for (const n of nodes) if (n !== cfg.cluster?.node) await loadConfigFile(file, n);
  console.log(`${file}: ok${nodes.length > 1 ? ` (for nodes ${nodes.join(", ")})` : ""}`);
  return 0;
}

async function main(args: string[]): Promise<number> {
  // Its own options (--out, --ca): parsed by the cluster command, not by the strict parser below.
  if (args[0] === "cluster") return await clusterCommand(args.slice(1));
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      config: { type: "string", short: "c" },
      password: { type: "string" },
      help: { type: "boolean", short: "h" },
      json: { type: "boolean" },
      node: { type: "string" },
      room: { type: "string" },
    },
  });
  const [cmd, sub, arg] = positionals;
  if (values.help || cmd === "help") {
    console.log(USAGE);
    return 0;
  }
  switch (cmd) {
    case "serve":
      return await serve(await config(values.config, values.node));
    case "version":
      console.log(`parley ${VERSION}`);
      return 0;
    case "config":
      if (sub !== "check" || !(arg ?? values.config)) break;
      return await checkConfig((arg ?? values.config)!, values.node);
    case "components":
      return await componentsCommand(
        await config(values.config, values.node),
        values.json ?? false,
      );
    case "rooms":
      return await roomsCommand(
        await config(values.config, values.node),
        values.json ?? false,
        values.room,
      );
    case "upload":
      if (sub !== "list" && sub !== "purge") break;
      return await uploadCommand(
        await config(values.config, values.node ?? ANY_NODE),
        sub,
        arg,
        values.json ?? false,
      );
    case "user":
      if (!["add", "passwd", "del", "list"].includes(sub ?? "")) break;
      return await userCommand(
        await config(values.config, values.node ?? ANY_NODE),
        sub,
        arg,
        values.password,
      );
  }
  console.error(USAGE);
  return 2;
}

if (import.meta.main) {
  try {
    Deno.exit(await main(Deno.args));
  } catch (e) {
    if (e instanceof ConfigError) {
      console.error(e.message);
      Deno.exit(1);
    }
    console.error(`error: ${(e as Error).message}`);
    Deno.exit(1);
  }
}
