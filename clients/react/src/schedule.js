/**
 * At most one call of `flush` per animation frame, however often `request()` is called:
 * tokens arrive hundreds of times a second and React needs to hear of them once a frame.
 * Where there are no animation frames (node, a worker), a 16 ms timer stands in; in a
 * hidden tab the browser pauses them, and the state waits for the tab to show.
 *
 * @param {() => void} flush
 * @returns {{request: () => void, dispose: () => void}}
 */
export function frameScheduler(flush) {
  let pending = null;
  let cancel = null;
  let disposed = false;

  function run() {
    pending = null;
    cancel = null;
    if (!disposed) flush();
  }

  return {
    request() {
      if (pending !== null || disposed) return;
      // Looked up at each request, so a test (or a polyfill loaded later) can supply them.
      const raf = globalThis.requestAnimationFrame;
      if (typeof raf === 'function') {
        pending = raf.call(globalThis, run);
        cancel = (handle) => globalThis.cancelAnimationFrame?.(handle);
      } else {
        pending = setTimeout(run, 16);
        cancel = clearTimeout;
      }
    },
    dispose() {
      disposed = true;
      if (pending !== null) cancel(pending);
      pending = null;
    },
  };
}
