// The server's counters for /metrics (src/metrics/metrics.ts): plain integer fields, bumped where
// the events happen and read at scrape time. A stanza is counted at its one choke point in each
// direction by one increment of a field resolved in advance: no lookup by label, no string built,
// nothing allocated on the path of a stanza. Gauges (sessions, rooms, peers…) are not kept here:
// they are read from the live objects when /metrics is asked.
import { MECHANISMS } from "../sasl/mechanisms.ts";
import { CsiCounts } from "../c2s/client_state.ts";
import { UploadCounts } from "../upload/counts.ts";

// First letters of the stanza names: a stanza is told by one character.
const M = "m".charCodeAt(0);
const P = "p".charCodeAt(0);
const I = "i".charCodeAt(0);

/** Stanzas of each kind. */
export class StanzaCounts {
  message = 0;
  presence = 0;
  iq = 0;

  /** Counts a stanza by its element name (`message`, `presence` or `iq`). */
  element(name: string): void {
    const c = name.charCodeAt(0);
    if (c === M) this.message++;
    else if (c === P) this.presence++;
    else if (c === I) this.iq++;
  }

  /** Counts a serialized stanza by its start tag (`<message`, `<presence`, `<iq`). */
  text(xml: string): void {
    const c = xml.charCodeAt(1);
    if (c === M) this.message++;
    else if (c === P) this.presence++;
    else if (c === I) this.iq++;
  }
}

/** The outcomes of authentications with one SASL mechanism. */
export interface AuthOutcomes {
  success: number;
  failure: number;
}

/** Mechanism label of an exchange that named no mechanism the server has. */
export const OTHER_MECHANISM = "other";

/** Authentication outcomes by SASL mechanism: the server's mechanisms, and `other`. */
export class AuthCounts {
  readonly #by = new Map<string, AuthOutcomes>(
    [...Object.keys(MECHANISMS), OTHER_MECHANISM].map((m) => [m, { success: 0, failure: 0 }]),
  );

  /** The counts of a mechanism as the client named it (`other` for one the server lacks). */
  of(mechanism: string): AuthOutcomes {
    return this.#by.get(mechanism) ?? this.#by.get(OTHER_MECHANISM)!;
  }

  entries(): Iterable<[string, AuthOutcomes]> {
    return this.#by.entries();
  }
}

export class Counters {
  /** Stanzas that entered the server from its clients and components, before routing. */
  readonly stanzasIn = new StanzaCounts();
  /** Stanzas written to this node's client sessions. */
  readonly stanzasOut = new StanzaCounts();
  /** Every <success/> and <failure/> of SASL, by mechanism. */
  readonly auth = new AuthCounts();
  /** Store operations that failed (src/metrics/counted_store.ts). */
  storeErrors = 0;
  /** What inactive client sessions (XEP-0352) were spared. */
  readonly csi = new CsiCounts();
  /** HTTP File Upload (XEP-0363): slots, files stored and served. */
  readonly uploads = new UploadCounts();
}
