// A frame type of the node-to-node protocol above the link: its number, a name for logs, the
// codec every received frame of it passes before a handler sees it, and a valid payload (the
// malformed-frame tests derive their inputs from it; a unit test checks it decodes).
import type { Codec } from "./codec.ts";

export interface FrameType<T> {
  readonly type: number;
  readonly name: string;
  readonly codec: Codec<T>;
  readonly example: string;
}

export function frameType<T>(
  type: number,
  name: string,
  codec: Codec<T>,
  example: string,
): FrameType<T> {
  return { type, name, codec, example };
}
