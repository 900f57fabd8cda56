/**
 * The share dialog (the header's `[data-action="share"]`): make a read-only link to a copy
 * of the open thread up to its last finished message, with an optional expiry; copy it; see
 * the thread's live links and revoke any. A native `<dialog>`: modal, Escape closes it, focus
 * stays inside and returns to the Share button. Every text is set as text.
 */
import * as api from './api.js';
import { el } from './dom.js';
import { copyText } from './richtext.js';

/**
 * A time for the list: the reader's locale, short.
 * @param {string} iso
 * @returns {string}
 */
export function formatWhen(iso) {
  return new Date(iso).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

/**
 * The line under a link in the list.
 * @param {{created_at: string, expires_at: string|null}} share
 * @returns {string}
 */
export function describeShare(share) {
  const expiry = share.expires_at ? `expires ${formatWhen(share.expires_at)}` : 'never expires';
  return `Created ${formatWhen(share.created_at)} · ${expiry}`;
}

/**
 * A share's page on this page's own origin: the server builds `url` from the request, which
 * behind a TLS proxy not configured for it says http://.
 * @param {{url: string}} share
 * @returns {string}
 */
export function pageUrl(share) {
  const base = globalThis.location?.href ?? 'http://localhost/';
  return new URL(new URL(share.url, base).pathname, base).href;
}

/**
 * Wire the dialog under `root`.
 * @param {ParentNode} root
 * @returns {{open(threadId: string, opener?: HTMLElement): Promise<void>, close(): void}}
 */
export function createShareDialog(root) {
  const $ = (selector) => root.querySelector(selector);
  const ui = {
    dialog: $('[data-share-dialog]'),
    form: $('[data-share-form]'),
    expiry: $('[data-share-expiry]'),
    create: $('[data-action="create-share"]'),
    link: $('[data-share-link]'),
    url: $('[data-share-url]'),
    copy: $('[data-action="copy-share"]'),
    status: $('[data-share-status]'),
    list: $('[data-share-list]'),
    empty: $('[data-share-empty]'),
  };
  let threadId = null;
  // Answers that come back for a thread the dialog no longer shows are dropped.
  let generation = 0;

  function say(text, { error = false } = {}) {
    ui.status.textContent = text;
    ui.status.classList.toggle('share-dialog__status--error', error);
  }

  function showLink(url) {
    ui.link.hidden = false;
    ui.url.value = url;
  }

  function item(share) {
    const row = el('li', 'share-item');
    row.dataset.shareToken = share.token;
    const text = el('div', 'share-item__text');
    const link = el('a', 'share-item__url', pageUrl(share));
    link.href = pageUrl(share);
    link.target = '_blank';
    link.rel = 'noopener';
    text.append(link, el('span', 'share-item__meta', describeShare(share)));
    const revoke = el('button', 'button button--quiet share-item__revoke', 'Revoke');
    revoke.type = 'button';
    revoke.dataset.action = 'revoke-share';
    revoke.setAttribute('aria-label', `Revoke the link created ${formatWhen(share.created_at)}`);
    revoke.addEventListener('click', () => revokeOne(share, row));
    row.append(text, revoke);
    return row;
  }

  function showList(shares) {
    ui.list.replaceChildren(...shares.map(item));
    ui.empty.hidden = shares.length > 0;
  }

  async function refresh() {
    const asked = generation;
    try {
      const shares = await api.listShares(threadId);
      if (asked === generation) showList(shares);
    } catch (error) {
      if (asked === generation) say(`Could not load this chat's links: ${error.message}`, { error: true });
    }
  }

  async function revokeOne(share, row) {
    const button = row.querySelector('[data-action="revoke-share"]');
    button.disabled = true;
    try {
      await api.revokeShare(share.token);
      if (ui.url.value === pageUrl(share)) ui.link.hidden = true;
      row.remove();
      ui.empty.hidden = ui.list.children.length > 0;
      say('Link revoked: it no longer opens.');
      ui.create.focus();
    } catch (error) {
      button.disabled = false;
      say(`Could not revoke the link: ${error.message}`, { error: true });
    }
  }

  ui.form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (!threadId) return;
    const asked = generation;
    ui.create.disabled = true;
    say('Creating a link…');
    try {
      const seconds = Number(ui.expiry.value) || null;
      const share = await api.createShare(threadId, { expiresIn: seconds });
      if (asked !== generation) return;
      showLink(pageUrl(share));
      say('Link created: anyone with it can read this copy of the chat.');
      // Copy is what comes next; the link stays readable from its start.
      ui.copy.focus();
      await refresh();
    } catch (error) {
      if (asked === generation) say(error.message, { error: true });
    } finally {
      ui.create.disabled = false;
    }
  });

  ui.copy.addEventListener('click', async () => {
    const ok = await copyText(ui.url.value);
    say(ok ? 'Link copied.' : 'Could not copy: select the link and copy it.', { error: !ok });
  });

  // A click on the backdrop (outside the dialog's box) closes it, as Escape does.
  ui.dialog.addEventListener('click', (event) => {
    if (event.target === ui.dialog) ui.dialog.close();
  });

  return {
    async open(nextThreadId) {
      generation += 1;
      threadId = nextThreadId;
      ui.link.hidden = true;
      ui.url.value = '';
      ui.list.replaceChildren();
      ui.empty.hidden = true;
      say('');
      if (!ui.dialog.open) ui.dialog.showModal();
      ui.create.focus();
      await refresh();
    },
    close() {
      if (ui.dialog.open) ui.dialog.close();
    },
  };
}
