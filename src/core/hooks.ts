// Prosody-style event hooks: handlers run by descending priority until one returns true
// ("handled"). Modules plug into the core through these instead of being called by it.
export type Handler<E> = (event: E) => boolean | void;

interface Entry<E> {
  fn: Handler<E>;
  priority: number;
}

export class Hooks<Events extends { [name: string]: unknown }> {
  #handlers = new Map<keyof Events, Entry<never>[]>();

  on<K extends keyof Events>(name: K, fn: Handler<Events[K]>, priority = 0): void {
    const list = (this.#handlers.get(name) ?? []) as Entry<Events[K]>[];
    list.push({ fn, priority });
    list.sort((a, b) => b.priority - a.priority);
    this.#handlers.set(name, list as Entry<never>[]);
  }

  /** Runs the handlers of `name`; true when one of them handled the event. */
  fire<K extends keyof Events>(name: K, event: Events[K]): boolean {
    const list = this.#handlers.get(name) as Entry<Events[K]>[] | undefined;
    if (!list) return false;
    for (const h of list) if (h.fn(event) === true) return true;
    return false;
  }
}
