/**
 * The thread list in the sidebar: one item per thread, or the rename field of the one being
 * renamed. Titles are set as text. The list's state (search, renaming, the threads) is
 * sidebar.js's.
 *
 * @typedef {import('./api.js').Thread} Thread
 */
import { el } from './dom.js';

/**
 * Render the thread sidebar. Links keep real hrefs so middle-click and copy-link work.
 * @param {HTMLElement} list    a <ul>
 * @param {Thread[]} threads    newest first
 * @param {string|null} activeId
 * @param {string|null} [renamingId]  the thread whose title is being edited in place
 */
export function renderThreadList(list, threads, activeId, renamingId = null) {
  const items = threads.map((thread) => {
    const title = thread.title?.trim() || 'Untitled';
    const item = el('li', 'thread');
    item.dataset.threadId = thread.id;
    if (thread.id === renamingId) {
      const form = el('form', 'thread__rename');
      const input = el('input', 'thread__rename-input');
      input.name = 'title';
      input.value = thread.title ?? '';
      input.maxLength = 200;
      input.setAttribute('aria-label', 'New title');
      form.append(input);
      item.append(form);
      return item;
    }
    const link = el('a', 'thread__link', title);
    link.href = `/t/${thread.id}/`;
    link.title = title;
    if (thread.id === activeId) link.setAttribute('aria-current', 'page');
    const rename = el('button', 'thread__action', '✎');
    rename.type = 'button';
    rename.dataset.threadAction = 'rename';
    rename.setAttribute('aria-label', `Rename “${title}”`);
    const remove = el('button', 'thread__action', '×');
    remove.type = 'button';
    remove.dataset.threadAction = 'delete';
    remove.setAttribute('aria-label', `Delete “${title}”`);
    item.append(link, rename, remove);
    return item;
  });
  list.replaceChildren(...items);
}
