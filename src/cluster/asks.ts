// Questions to peers and their answers: each question has a number, goes to one or more peers,
// and settles when every one of them has answered, gone down, or the time is up (the answers it
// has then). Cache invalidations, component counters and the proxy's requests all ask this way.
export class Asks<A> {
  #open = new Map<
    number,
    { waiting: Set<string>; answers: Map<string, A>; done: () => void }
  >();
  #next = 0;

  /**
   * Asks `peers`: `send` sends question `id` to one, false when it cannot. Resolves with the
   * answers, by peer, when all have answered or gone, or after `timeoutMs`.
   */
  ask(
    peers: Iterable<string>,
    send: (peer: string, id: number) => boolean,
    timeoutMs = Infinity,
  ): Promise<Map<string, A>> {
    const id = ++this.#next;
    const waiting = new Set<string>();
    const answers = new Map<string, A>();
    for (const peer of peers) if (send(peer, id)) waiting.add(peer);
    if (waiting.size === 0) return Promise.resolve(answers);
    return new Promise((resolve) => {
      const timer = timeoutMs === Infinity ? undefined : setTimeout(() => done(), timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.#open.delete(id);
        resolve(answers);
      };
      this.#open.set(id, { waiting, answers, done });
    });
  }

  /** Whether question `id` waits for `peer`'s answer. */
  waits(peer: string, id: number): boolean {
    return this.#open.get(id)?.waiting.has(peer) ?? false;
  }

  /** `peer` answered question `id`. */
  answered(peer: string, id: number, answer: A): void {
    const q = this.#open.get(id);
    if (!q?.waiting.delete(peer)) return;
    q.answers.set(peer, answer);
    if (q.waiting.size === 0) q.done();
  }

  /** `peer` is gone: no question waits for it any more. */
  gone(peer: string): void {
    for (const q of [...this.#open.values()]) {
      if (q.waiting.delete(peer) && q.waiting.size === 0) q.done();
    }
  }
}
