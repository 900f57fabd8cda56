/**
 * The thread list in the sidebar: pinned threads first, then the others by when they last
 * changed, in date groups of the user's local time (Today, Yesterday, Previous 7 days,
 * Previous 30 days, then by month); one item per thread, or the rename field of the one being
 * renamed. Titles are set as text. The list's state (search, renaming, the threads) is
 * sidebar.js's.
 *
 * @typedef {import('./api.js').Thread} Thread
 * @typedef {{key: string, label: string, threads: Thread[]}} ThreadGroup
 */
import { el } from './dom.js';

const SVG = 'http://www.w3.org/2000/svg';
const MONTH = new Intl.DateTimeFormat('en', { month: 'long', year: 'numeric' });

/**
 * The list's groups, in order, each with its threads in the order given. DOM-free.
 * @param {Thread[]} threads  newest first
 * @param {Date} [now]
 * @returns {ThreadGroup[]}
 */
export function groupThreads(threads, now = new Date()) {
  // Local midnights, counted in calendar days (a day with a clock change is not 24 h long).
  const midnight = (daysAgo) => new Date(now.getFullYear(), now.getMonth(), now.getDate() - daysAgo).getTime();
  const bounds = [
    ['today', 'Today', midnight(0)],
    ['yesterday', 'Yesterday', midnight(1)],
    ['week', 'Previous 7 days', midnight(7)],
    ['month', 'Previous 30 days', midnight(30)],
  ];
  const groups = new Map();
  const add = (key, label, thread) => {
    if (!groups.has(key)) groups.set(key, { key, label, threads: [] });
    groups.get(key).threads.push(thread);
  };
  for (const thread of threads.filter((t) => t.pinned)) add('pinned', 'Pinned', thread);
  for (const thread of threads.filter((t) => !t.pinned)) {
    const when = new Date(thread.updated_at ?? thread.created_at ?? now);
    const time = Number.isNaN(when.getTime()) ? now.getTime() : when.getTime();
    const bound = bounds.find(([, , start]) => time >= start);
    if (bound) add(bound[0], bound[1], thread);
    else add(`${when.getFullYear()}-${String(when.getMonth() + 1).padStart(2, '0')}`, MONTH.format(when), thread);
  }
  return [...groups.values()];
}

function pinIcon() {
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('aria-hidden', 'true');
  for (const d of ['M9 3h6l-1 6 4 4v2H6v-2l4-4-1-6z', 'M12 15v6']) {
    const path = document.createElementNS(SVG, 'path');
    path.setAttribute('d', d);
    svg.append(path);
  }
  return svg;
}

function threadItem(thread, activeId, renamingId) {
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
  const pin = el('button', 'thread__action thread__pin');
  pin.type = 'button';
  pin.dataset.threadAction = 'pin';
  pin.setAttribute('aria-pressed', String(Boolean(thread.pinned)));
  pin.setAttribute('aria-label', `Pin “${title}”`);
  pin.title = thread.pinned ? 'Unpin' : 'Pin';
  pin.append(pinIcon());
  const rename = el('button', 'thread__action', '✎');
  rename.type = 'button';
  rename.dataset.threadAction = 'rename';
  rename.setAttribute('aria-label', `Rename “${title}”`);
  const remove = el('button', 'thread__action', '×');
  remove.type = 'button';
  remove.dataset.threadAction = 'delete';
  remove.setAttribute('aria-label', `Delete “${title}”`);
  item.append(link, pin, rename, remove);
  return item;
}

/**
 * Render the thread sidebar. Links keep real hrefs so middle-click and copy-link work.
 * @param {HTMLElement} list    a <ul>
 * @param {Thread[]} threads    newest first
 * @param {string|null} activeId
 * @param {string|null} [renamingId]  the thread whose title is being edited in place
 * @param {{grouped?: boolean, now?: Date}} [options]  grouped: in date groups (search results
 *   are not)
 */
export function renderThreadList(list, threads, activeId, renamingId = null, { grouped = false, now = new Date() } = {}) {
  if (!grouped) {
    list.replaceChildren(...threads.map((thread) => threadItem(thread, activeId, renamingId)));
    return;
  }
  list.replaceChildren(...groupThreads(threads, now).map(({ key, label, threads: members }) => {
    const group = el('li', 'thread-group');
    group.dataset.threadGroup = key;
    const heading = el('h2', 'thread-group__title', label);
    heading.id = `thread-group-${key}`;
    const items = el('ul', 'threads threads--group');
    items.setAttribute('aria-labelledby', heading.id);
    items.append(...members.map((thread) => threadItem(thread, activeId, renamingId)));
    group.append(heading, items);
    return group;
  }));
}
