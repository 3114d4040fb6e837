// Every frame type of the node-to-node protocol above the link, in one list: numbers are unique
// (checked when this module loads), and the malformed-frame tests cover each of them.
import type { FrameType } from "./frame_type.ts";
import { SESSION_FRAMES } from "./wire.ts";
import { COMPONENT_FRAMES } from "./component_wire.ts";
import { PROXY65_FRAMES } from "./proxy65_wire.ts";
import { MUC_FRAMES } from "./muc_wire.ts";
import { SM_FRAMES } from "./session_wire.ts";

export const ALL_FRAMES: readonly FrameType<unknown>[] = [
  ...SESSION_FRAMES,
  ...COMPONENT_FRAMES,
  ...PROXY65_FRAMES,
  ...MUC_FRAMES,
  ...SM_FRAMES,
];

const seen = new Set<number>();
for (const f of ALL_FRAMES) {
  if (seen.has(f.type)) throw new Error(`cluster frame type ${f.type} (${f.name}) is taken twice`);
  seen.add(f.type);
}
