// What /metrics says of uploads (docs/monitoring.md): plain counters, bumped as slots are given,
// files stored and served, read at scrape time.
export class UploadCounts {
  /** Slots given out. */
  slots = 0;
  /** Slot requests refused (a limit, a bad request, not allowed). */
  refused = 0;
  /** Files stored by a PUT, and their bytes. */
  uploads = 0;
  uploadBytes = 0;
  /** PUTs refused (a bad or expired slot, sizes or type that differ, a used slot, the quota). */
  uploadsRefused = 0;
  /** GET answers with a body (200 and 206), and the bytes they carry. */
  downloads = 0;
  downloadBytes = 0;
  /** Requests refused for their address's rate (429). */
  rateLimited = 0;
  /** Files removed by retention, and by account removal or `parley upload purge`. */
  expired = 0;
}
