/**
 * The notice bar (one message at a time, with Retry when retrying can help) and the
 * screen-reader announcer. What the page says about a failure is decided here; whether it is
 * worth retrying is protocol.js errorClass()'s call.
 *
 * @typedef {{retry?: (() => void)|null, kind?: string}} NoticeOptions
 * @typedef {object} Notices
 * @property {(text: string, options?: NoticeOptions) => void} show
 * @property {() => void} hide
 * @property {(text: string) => void} announce  for screen readers only
 * @property {() => void} tooLarge  the composer's text is over the limit
 * @property {(error: {code: string, message: string, kind?: string}) => void} refusal
 *   the server refused a command (an `error` frame without a message)
 * @property {(error: Error & {status?: number}, what: string, options?: {retry?: () => void}) => void} failed
 *   a request failed; `what` is the sentence's start ("Could not search"); Retry is offered
 *   only when the error is recoverable
 */
import { errorClass } from './protocol.js';

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
  // What the server's refusals mean for the user, by error code.
  const REFUSALS = {
    busy: 'A reply is already running in this thread. Wait for it to finish or press Stop.',
    too_large: `That message is too long: the limit is ${maxChars} characters.`,
    rate_limited: 'Too many messages in a short time. Wait a moment, then retry.',
    quota_exceeded: "Today's token budget is spent. It renews at midnight UTC.",
    too_many_sockets: 'Too many chat tabs are open for your account. Close some; this one keeps retrying.',
  };
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
    tooLarge() {
      show(REFUSALS.too_large);
    },
    refusal(error) {
      show(REFUSALS[error.code] ?? error.message, { kind: errorClass(error).kind });
    },
    failed(error, what, { retry: onRetry = null } = {}) {
      const { kind, recoverable } = errorClass(error);
      show(describeRequestError(error, what), { kind, retry: recoverable ? onRetry : null });
    },
  };
}
