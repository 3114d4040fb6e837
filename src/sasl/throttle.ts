// Failed-authentication throttling per source address and per account (issue 7). Stub: the
// auth work fills in the policy; the server owns one instance, shared by every listener.
import type { Config } from "../config/schema.ts";

export class AuthThrottle {
  constructor(readonly config: Config["auth"]) {}

  /** Whether an authentication attempt from `ip` (for `account`, once known) may run now. */
  allowed(_ip: string, _account?: string): boolean {
    return true;
  }

  /** Records a failed attempt. */
  failed(_ip: string, _account?: string): void {}
}
