// HTTP File Upload (XEP-0363 v1.1), the XMPP side: the service at `upload.domain` answers
// disco#info (identity store/file, the upload feature, max-file-size in a data form, §3) and slot
// requests (§4), refusing as §4 and §5 say: a file over max-file-size is not-acceptable with
// <file-too-large/>, a content type not allowed is not-acceptable, too many slots or too many
// bytes stored already are resource-constraint of type wait (with <retry/> when the time is
// known), a malformed request is bad-request, anyone but the host's own accounts not-allowed. A
// slot is a signed token (slot.ts), verified by whichever node the PUT reaches; the HTTP side is
// http.ts, the files are in a FileStore (file_store.ts) every node reads.
import { x } from "../xml/element.ts";
import { NS } from "../xml/ns.ts";
import { dataForm } from "../xml/data_form.ts";
import type { Jid } from "../jid/jid.ts";
import type { Element } from "../xml/element.ts";
import type { DomainHandler, Router } from "../router/router.ts";
import { discoInfoPayload, IqHandlers, type IqRequest } from "../core/iq.ts";
import type { Distribution } from "../core/distribution.ts";
import type { Config, UploadConfig } from "../config/schema.ts";
import { parseDuration } from "../config/duration.ts";
import type { Store } from "../storage/store.ts";
import { logger } from "../log/logger.ts";
import type { FileStore } from "./file_store.ts";
import { BYTE_COUNT, newId, type Slot, SlotSigner } from "./slot.ts";
import { PerMinute } from "./rate.ts";
import { uploadRetention } from "./retention.ts";
import type { Retention } from "../core/retention.ts";
import type { UploadCounts } from "./counts.ts";
import { contentTypeProblem, essence, filenameProblem, typeAllowed } from "./names.ts";

const log = logger("upload");

export const NS_UPLOAD = "urn:xmpp:http:upload:0";
/** Where every upload service's files are served on the http listeners (then its domain). */
export const UPLOAD_PATH = "/upload/";
/** What a file is served as when its slot named no content type. */
export const DEFAULT_TYPE = "application/octet-stream";

/**
 * How the service is spread over nodes: nothing to do, as the files and the slots' key are in
 * the store every node shares; one kind for one node and for a cluster (distribution.ts).
 */
export interface UploadDistribution extends Distribution<UploadService> {
  /** The file store, shared by the node's upload services (each host's). */
  open(config: Config): Promise<FileStore>;
  /** A service is done with it. */
  release(): Promise<void>;
}

/** What the service needs of the server beside its configuration. */
export interface UploadDeps {
  /** The server's configuration: where files are kept (storage, data_dir), allowed origins. */
  config: Config;
  router: Router;
  /** The accounts: only existing ones may upload. */
  store: Store;
  /** The cluster secret, which signs slots. */
  secret: Uint8Array;
  counts: UploadCounts;
  /** The base URL clients reach this node's http listener at, once it listens. */
  url: () => string | undefined;
}

export class UploadService implements DomainHandler {
  readonly signer: SlotSigner;
  readonly slotMs: number;
  readonly retentionMs: number;
  /** The largest file a slot is given for: max_file_size, or the quota when it is less. */
  readonly maxSize: number;
  /** Per account: slot requests. */
  readonly slotRate: PerMinute;
  /** Per client address (IPv6: /64): uploads and downloads. */
  readonly requestRate: PerMinute;
  #files: FileStore | undefined;
  #retention: Retention | undefined;
  readonly #iq: IqHandlers;

  constructor(
    readonly config: UploadConfig,
    /** The host whose accounts may upload. */
    readonly host: string,
    readonly deps: UploadDeps,
    readonly distribution: UploadDistribution,
  ) {
    this.signer = new SlotSigner(deps.secret);
    this.slotMs = parseDuration(config.slot_timeout)!;
    this.retentionMs = parseDuration(config.retention)!;
    this.maxSize = Math.min(config.max_file_size, config.quota_per_user);
    this.slotRate = new PerMinute(config.slots_per_minute);
    this.requestRate = new PerMinute(config.requests_per_minute);
    distribution.serve(this);
    const info = discoInfoPayload(
      [{ category: "store", type: "file", name: "HTTP File Upload" }],
      [NS.discoInfo, NS_UPLOAD],
    );
    info.append(dataForm("result", NS_UPLOAD, [
      { var: "max-file-size", values: [String(this.maxSize)] },
    ]));
    this.#iq = new IqHandlers(deps.router, log)
      .onGet(NS.discoInfo, (iq) => iq.reply(info))
      .onGet(NS.discoItems, (iq) => iq.reply(x("query", { xmlns: NS.discoItems })))
      .onGet(NS_UPLOAD, (iq) => this.#request(iq));
  }

  get domain(): string {
    return this.config.domain;
  }

  /** Where the files are; there once the service has started. */
  get files(): FileStore {
    if (!this.#files) throw new Error("the upload service has not started");
    return this.#files;
  }

  /** Where this service's files are served, under the http listener's base URL. */
  get path(): string {
    return `${UPLOAD_PATH}${encodeURIComponent(this.domain)}/`;
  }

  /** Opens the file store and starts removing files past retention. */
  async start(): Promise<void> {
    const { config } = this.deps;
    if (config.cluster && !config.http.public_url) {
      log.warn(
        "upload {domain}: no http.public_url in a cluster: download URLs name this node, and " +
          "stop working when it is gone",
        { domain: this.domain },
      );
    }
    this.#files = await this.distribution.open(this.deps.config);
    this.#retention = uploadRetention(this.host, this.#files, this.retentionMs, this.deps.counts);
    this.#retention.start();
  }

  get retention(): Retention | undefined {
    return this.#retention;
  }

  async stop(): Promise<void> {
    this.#retention?.stop();
    if (this.#files) await this.distribution.release();
  }

  /** Removes an account's files (its removal); how many. */
  async forget(account: Jid): Promise<number> {
    const n = await this.files.purge(account.bare);
    this.deps.counts.expired += n;
    if (n > 0) log.info("removed {n} uploaded files of {account}", { n, account: account.bare });
    return n;
  }

  receive(stanza: Element, from: Jid, to: Jid): void {
    if (stanza.name === "iq") this.#iq.dispatch(stanza, from, to);
    else if (stanza.name === "message") this.deps.router.bounce(stanza, "service-unavailable");
  }

  /** A slot request (§4): a slot, or the error that says why not. */
  async #request(iq: IqRequest): Promise<void> {
    const { from, payload: r } = iq;
    const counts = this.deps.counts;
    const refuse: typeof iq.error = (condition, opts) => {
      counts.refused++;
      iq.error(condition, opts);
    };
    if (from.isDomain || from.domain !== this.host) {
      return refuse("not-allowed", { text: `only accounts of ${this.host} may upload here` });
    }
    if (r.name !== "request") return refuse("bad-request", { text: "expected <request/>" });
    const { filename, size: sizeText } = r.attrs;
    const type = r.attrs["content-type"];
    const problem = filenameProblem(filename) ??
      (!BYTE_COUNT.test(sizeText ?? "") ? "size must be a number of bytes" : undefined) ??
      (type !== undefined ? contentTypeProblem(type) : undefined);
    if (problem) return refuse("bad-request", { text: problem });
    const size = Number(sizeText);
    if (size > this.maxSize) {
      return refuse("not-acceptable", {
        text: `the file is too large: at most ${this.maxSize} bytes`,
        extra: x(
          "file-too-large",
          { xmlns: NS_UPLOAD },
          x("max-file-size", {}, String(this.maxSize)),
        ),
      });
    }
    if (!typeAllowed(type ?? DEFAULT_TYPE, this.config.allowed_types)) {
      return refuse("not-acceptable", {
        text: `files of type ${essence(type ?? DEFAULT_TYPE)} are not accepted here`,
      });
    }
    const owner = from.bare;
    const wait = this.slotRate.take(owner);
    if (wait > 0) {
      return refuse("resource-constraint", {
        type: "wait",
        text: `at most ${this.config.slots_per_minute} uploads a minute`,
        extra: retry(Date.now() + wait),
      });
    }
    const used = await this.files.usage(owner);
    if (used + size > this.config.quota_per_user) {
      return refuse("resource-constraint", {
        type: "wait",
        text: `quota exceeded: ${used} of ${this.config.quota_per_user} bytes stored`,
        extra: await this.#freedAt(owner, used + size - this.config.quota_per_user),
      });
    }
    const slot: Slot = {
      id: newId(),
      owner,
      filename: filename!,
      size,
      type: type ?? "",
      expires: Date.now() + this.slotMs,
    };
    const base = this.deps.url();
    if (!base) return refuse("service-unavailable", { text: "no http listener serves uploads" });
    const url = `${base}${this.path}${slot.id}/${encodeURIComponent(slot.filename)}`;
    counts.slots++;
    iq.reply(x(
      "slot",
      { xmlns: NS_UPLOAD },
      x("put", { url }, x("header", { name: "Authorization" }, `Bearer ${this.signer.sign(slot)}`)),
      x("get", { url }),
    ));
  }

  /**
   * <retry/> at the time retention will have removed enough of the owner's files to free `need`
   * bytes, or nothing when it will not (uploads under way are not listed).
   */
  async #freedAt(owner: string, need: number): Promise<Element | undefined> {
    let freed = 0;
    for (const f of await this.files.list(owner)) {
      freed += f.size;
      if (freed >= need) return retry(f.at + this.retentionMs);
    }
    return undefined;
  }
}

/** <retry stamp/> (§5) at `at`, to the next whole second (XEP-0082). */
function retry(at: number): Element {
  const stamp = new Date(Math.ceil(at / 1000) * 1000).toISOString().replace(/\.000Z$/, "Z");
  return x("retry", { xmlns: NS_UPLOAD, stamp });
}
