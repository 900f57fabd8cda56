/**
 * The open thread's connection badge in the header, and its "Retry now" button while the
 * connection is down. The badge's `data-connection` value is the page hook.
 *
 * @typedef {import('./connection.js').ConnectionState} ConnectionState
 */

const CONNECTION_LABELS = {
  connecting: 'Connecting…',
  open: 'Connected',
  reconnecting: 'Reconnecting…',
  offline: 'Offline',
};

/**
 * Wire the badge under `root`.
 * @param {ParentNode} root
 * @param {{onRetry: () => void}} options  what "Retry now" does
 * @returns {{show(state: ConnectionState): void, hide(): void}}  shown while a thread is open
 */
export function createConnectionBadge(root, { onRetry }) {
  const badge = root.querySelector('[data-connection]');
  const retry = root.querySelector('[data-action="reconnect"]');
  retry.addEventListener('click', onRetry);
  return {
    show(state) {
      badge.hidden = false;
      badge.dataset.connection = state;
      badge.textContent = CONNECTION_LABELS[state] ?? state;
      retry.hidden = !(state === 'reconnecting' || state === 'offline');
    },
    hide() {
      badge.hidden = true;
      retry.hidden = true;
    },
  };
}
