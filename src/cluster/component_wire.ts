// What nodes say to each other about external component instances (frame types COMPONENT_TYPES
// + 0 … 15): the instances each holds, stanzas forwarded to one of them, and their counters.
import { z } from "zod";
import {
  checkStanza,
  count,
  decimal,
  decimalText,
  domain,
  FrameError,
  intIn,
  json,
  name,
} from "./codec.ts";
import { parseJid } from "../jid/jid.ts";
import { frameType } from "./frame_type.ts";
import { COMPONENT_TYPES } from "./wire.ts";

/** Instances one INSTANCES frame may name (a pool's instances are a handful). */
const MAX_INSTANCES = 100_000;

const instance = z.object({
  domain,
  id: name,
  since: count,
  remote: z.string().max(1024),
});

export type InstanceRecord = z.input<typeof instance>;

const INSTANCE_EXAMPLE = JSON.stringify(
  {
    domain: "echo.localhost",
    id: "n1/1",
    since: 1_765_000_000_000,
    remote: "127.0.0.1:40000",
  } satisfies InstanceRecord,
);

/** Every instance the sender holds (on link up): JSON InstanceRecord[]. */
export const INSTANCES = frameType(
  COMPONENT_TYPES,
  "component instances",
  json(z.array(instance).max(MAX_INSTANCES)),
  `[${INSTANCE_EXAMPLE}]`,
);
/** One instance connected to the sender: JSON InstanceRecord. */
export const JOINED = frameType(
  COMPONENT_TYPES + 1,
  "component joined",
  json(instance),
  INSTANCE_EXAMPLE,
);
/** One instance of the sender gone: JSON { domain, id }. */
export const LEFT = frameType(
  COMPONENT_TYPES + 2,
  "component left",
  json(z.object({ domain, id: name })),
  `{"domain":"echo.localhost","id":"n1/1"}`,
);
/** A stanza for an instance of the receiver: hops, domain, instance id, XML (one a line). */
export const FORWARD = frameType(
  COMPONENT_TYPES + 3,
  "component forward",
  {
    // Read by hand: this is every stanza for a component instance on another node.
    decode(text): [hops: number, domain: string, id: string, xml: string] {
      const a = text.indexOf("\n");
      const b = text.indexOf("\n", a + 1);
      const c = text.indexOf("\n", b + 1);
      if (a < 0 || b < 0 || c < 0) throw new FrameError("not hops, domain, id and a stanza");
      const hops = intIn(decimalText(text.slice(0, a), "hops"), 0, 16, "hops");
      const to = parseJid(text.slice(a + 1, b));
      if (!to?.isDomain || !to.isBare) throw new FrameError("not a domain");
      const id = text.slice(b + 1, c);
      if (id.length === 0 || id.length > 1023) throw new FrameError("not an instance id");
      return [hops, to.domain, id, checkStanza(text.slice(c + 1))];
    },
  },
  "0\necho.localhost\nn1/1\n<message from='alice@localhost/r' to='echo.localhost'/>",
);
/** How many FORWARD frames of this link the receiver has handled (decimal). */
export const FORWARDED = frameType(COMPONENT_TYPES + 4, "component forwarded", decimal, "3");
/** Asks for the traffic counters of the receiver's instances: the request number. */
export const STATS = frameType(COMPONENT_TYPES + 5, "component stats", decimal, "1");
/** The answer: JSON { n, stats: { [instance id]: [received, sent] } }. */
export const STATS_OF = frameType(
  COMPONENT_TYPES + 6,
  "component stats of",
  json(z.object({
    n: count,
    stats: z.custom<object>(
      (v) => typeof v === "object" && v !== null && Object.keys(v).length <= MAX_INSTANCES,
      "too many instances",
    ).pipe(z.record(name, z.tuple([count, count]))),
  })),
  `{"n":1,"stats":{"n1/1":[10,9]}}`,
);

export const COMPONENT_FRAMES = [INSTANCES, JOINED, LEFT, FORWARD, FORWARDED, STATS, STATS_OF];
