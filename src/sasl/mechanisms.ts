// The SASL mechanisms the server offers, strongest first.
import type { SaslContext, SaslMechanism } from "./mechanism.ts";
import { PlainMechanism } from "./plain.ts";
import { ScramMechanism } from "./scram.ts";

export const MECHANISMS: Record<string, (ctx: SaslContext) => SaslMechanism> = {
  "SCRAM-SHA-256": (ctx) => new ScramMechanism("SHA-256", ctx),
  "SCRAM-SHA-1": (ctx) => new ScramMechanism("SHA-1", ctx),
  "PLAIN": (ctx) => new PlainMechanism(ctx),
};

/** Mechanisms offered on a stream; PLAIN only when the stream is encrypted or a listener allows it. */
export function offeredMechanisms(plainAllowed: boolean): string[] {
  return Object.keys(MECHANISMS).filter((m) => m !== "PLAIN" || plainAllowed);
}
