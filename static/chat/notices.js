/**
 * What the page says about a failure, in one place: the notice bar (one message at a time,
 * with Retry when retrying can help), the note on a failed message, the screen-reader
 * announcer, and the offline-demo notice (dismissed once, remembered in localStorage).
 * A refusal has one wording, from its code (describeFailure), wherever it shows: on the
 * message it refused when there is one, in the bar only when there is none. Whether it is
 * worth retrying is protocol.js errorClass()'s call.
 *
 * @typedef {{retry?: (() => void)|null, kind?: string}} NoticeOptions
 * @typedef {object} Notices
 * @property {(text: string, options?: NoticeOptions) => void} show
 * @property {() => void} hide
 * @property {(text: string) => void} announce  for screen readers only
 * @property {(length: number) => void} tooLarge  the text typed (`length` characters) is over the limit
 * @property {(error: {code: string, message: string, kind?: string}) => void} refusal
 *   the server refused a command and no message shows it (an `error` frame without a message)
 * @property {(error: Error & {status?: number}, what: string, options?: {retry?: () => void}) => void} failed
 *   a request failed; `what` is the sentence's start ("Could not search"); Retry is offered
 *   only when the error is recoverable
 */
import { errorClass } from './protocol.js';

/** The note on a reply whose process died: what was shown is kept. */
export const INTERRUPTED = 'Interrupted: the reply was cut off and kept as far as it got.';
// The start of the sentence, by the kind of failure (errorClass).
const ERROR_LABELS = {
  network: 'Network problem',
  timeout: 'Timed out',
  server: 'Server error',
  rate_limit: 'Rate limited',
  limit: 'Too many connections',
  request: 'Not sent',
};
// The reason, when the server sent none (a saved message keeps only its code; the client's
// own errors): the server's own words otherwise, which say which limit and how long.
const REASONS = {
  busy: 'A reply is already being written in this thread; wait for it or press Stop.',
  too_large: 'The message is over the length limit.',
  rate_limited: 'Too many messages in a short time; try again shortly.',
  quota_exceeded: "Today's token budget is spent; it renews at midnight UTC.",
  too_many_sockets: 'Too many chat tabs are open for your account; close some (this one keeps retrying).',
  provider_error: 'The model failed.',
  timeout: 'The reply took too long.',
  internal: 'The server failed; try again.',
};
const DEMO_KEY = 'chat-demo-notice-dismissed';

/**
 * The one sentence for a failure with an error code: a refusal, a failed reply or message.
 * @param {{code: string, message?: string, recoverable?: boolean}} error
 * @returns {string}
 */
export function describeFailure(error) {
  if (error.code === 'interrupted') return INTERRUPTED;
  const { kind } = errorClass(error);
  const reason = error.message || REASONS[error.code] || error.code;
  return `${ERROR_LABELS[kind]}: ${reason}`;
}

/**
 * The composer's own refusal of text over the limit, in the server's words for it.
 * @param {number} length characters typed
 * @param {number} maxChars the limit
 * @returns {string}
 */
export function describeTooLong(length, maxChars) {
  return describeFailure({ code: 'too_large', message: `The message is ${length} characters; the limit is ${maxChars}.` });
}

/**
 * The page's sentence for a failed request.
 * @param {Error & {status?: number}} error from api.js
 * @param {string} what e.g. "Could not load this thread"
 * @returns {string}
 */
export function describeRequestError(error, what) {
  const status = error?.status;
  if (status === 401 || status === 403) return `${what}: your session may have expired. Reload the page to log in again.`;
  if (status >= 500) return `${what}: the server failed (${status}).`;
  if (status === 429) return `${what}: too many requests; wait a moment.`;
  const reason = status ? error.message : 'network problem';
  return `${what}: ${reason}${/[.!?]$/.test(reason) ? '' : '.'}`;
}

/**
 * Wire the notice bar and the announcer of the page under `root`.
 * @param {ParentNode} root
 * @param {{maxChars: number}} options
 * @returns {Notices}
 */
export function createNotices(root, { maxChars }) {
  const bar = root.querySelector('[data-notice]');
  const text = root.querySelector('[data-notice-text]');
  const retryButton = root.querySelector('[data-action="notice-retry"]');
  const announcer = root.querySelector('[data-announcer]');
  let retry = null;

  function show(message, { retry: onRetry = null, kind = 'request' } = {}) {
    text.textContent = message;
    bar.dataset.kind = kind;
    retry = onRetry;
    retryButton.hidden = !onRetry;
    bar.hidden = false;
  }

  function hide() {
    bar.hidden = true;
    retry = null;
  }

  root.querySelector('[data-action="dismiss-notice"]').addEventListener('click', hide);
  wireDemoNotice(root);
  retryButton.addEventListener('click', () => {
    const again = retry;
    hide();
    again?.();
  });

  return {
    show,
    hide,
    announce(message) {
      announcer.textContent = message;
    },
    tooLarge(length) {
      show(describeTooLong(length, maxChars));
    },
    refusal(error) {
      show(describeFailure(error), { kind: errorClass(error).kind });
    },
    failed(error, what, { retry: onRetry = null } = {}) {
      const { kind, recoverable } = errorClass(error);
      show(describeRequestError(error, what), { kind, retry: recoverable ? onRetry : null });
    },
  };
}

// The offline-demo notice: shown while the model is the demo (threadheader.js) until it is
// dismissed, then never again in this browser (storage off: until the next page). The mark is
// on <html>, where theme.js also puts it before the first paint.
function wireDemoNotice(root) {
  const banner = root.querySelector('[data-demo-banner]');
  if (!banner) return;
  const html = banner.ownerDocument.documentElement;
  try {
    if (localStorage.getItem(DEMO_KEY)) html.dataset.demoDismissed = 'true';
  } catch {
    // Storage disabled: the notice shows, and dismissing it lasts for this page.
  }
  banner.querySelector('[data-action="dismiss-demo"]')?.addEventListener('click', () => {
    html.dataset.demoDismissed = 'true';
    try {
      localStorage.setItem(DEMO_KEY, '1');
    } catch {
      // See above.
    }
  });
}
