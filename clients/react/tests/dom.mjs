// A browser-like global scope for the hooks' tests: jsdom's window as the globals React and
// @testing-library/react look for. Import it before either.
import { JSDOM } from 'jsdom';

const dom = new JSDOM('<!doctype html><html><body></body></html>', {
  url: 'http://chat.test/',
  pretendToBeVisual: true,
});
const { window } = dom;

// Not Event: jsdom's own WebSocket (undici) dispatches node's Events, which a replaced global breaks.
for (const name of ['window', 'document', 'navigator', 'HTMLElement', 'Node', 'MutationObserver', 'getComputedStyle']) {
  Object.defineProperty(globalThis, name, { value: name === 'window' ? window : window[name], configurable: true, writable: true });
}
globalThis.location = window.location;
// React's act() warns unless it is told this is a test environment.
globalThis.IS_REACT_ACT_ENVIRONMENT = true;

/**
 * Animation frames run by the test: `run()` fires the frames asked for so far, so a test
 * can count React updates per frame.
 */
export function manualFrames() {
  let queue = [];
  let next = 1;
  const saved = [globalThis.requestAnimationFrame, globalThis.cancelAnimationFrame];
  globalThis.requestAnimationFrame = (callback) => {
    queue.push({ handle: next, callback });
    return next++;
  };
  globalThis.cancelAnimationFrame = (handle) => {
    queue = queue.filter((f) => f.handle !== handle);
  };
  return {
    pending: () => queue.length,
    run() {
      const due = queue;
      queue = [];
      for (const { callback } of due) callback(performance.now());
      return due.length;
    },
    restore() {
      [globalThis.requestAnimationFrame, globalThis.cancelAnimationFrame] = saved;
    },
  };
}

export { dom };
