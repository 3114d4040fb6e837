// The store's failures, counted for parley_store_errors_total around any Store: each method call
// that rejects (or throws) adds one, and the shapes the store hands out (keyval, map, archive)
// are counted the same way. UnknownItemError (an archive query naming an item that is not there)
// is the caller's mistake, not the store's, and is not counted.
//
// A Proxy, so that a method added to the Store later is counted with no change here. Its cost, a
// trap, a WeakMap lookup and one promise per store call, is nothing beside the call to the
// database; no stanza is routed through the store.
import { UnknownItemError } from "../storage/store.ts";

type Method = (...args: unknown[]) => unknown;

export function countFailures<T extends object>(target: T, failed: () => void): T {
  const wrappers = new WeakMap<Method, Method>();
  const settle = (result: unknown): unknown => {
    if (result === null || typeof result !== "object") return result;
    if (typeof (result as PromiseLike<unknown>).then === "function") {
      return Promise.resolve(result).catch((e) => {
        if (!(e instanceof UnknownItemError)) failed();
        throw e;
      });
    }
    // A shape (keyval, map, archive): its own calls are counted too.
    return countFailures(result, failed);
  };
  return new Proxy(target, {
    get(t, key) {
      const value: unknown = Reflect.get(t, key, t);
      if (typeof value !== "function") return value;
      const method = value as Method;
      let wrapper = wrappers.get(method);
      if (!wrapper) {
        wrapper = (...args: unknown[]) => {
          let result: unknown;
          try {
            // The target itself as `this`: its private fields are not the proxy's.
            result = method.apply(t, args);
          } catch (e) {
            failed();
            throw e;
          }
          return settle(result);
        };
        wrappers.set(method, wrapper);
      }
      return wrapper;
    },
  });
}
