/**
 * The sidebar: the thread list (date groups, pinning, search, paging, rename, delete), the new-thread button, the
 * tokens-left line, and opening and closing it at phone width. It owns what the page knows of
 * the user's threads: one object per thread, whichever list shows it.
 *
 * @typedef {import('./api.js').Thread} Thread
 * @typedef {object} SidebarThread  what the sidebar needs of the open thread
 * @property {() => string|null} id
 * @property {(threadId: string) => void} show   show another thread
 * @property {() => void} home                   the empty page (a new thread)
 * @property {() => void} titled                 a thread's title changed: redraw the header
 * @typedef {object} Sidebar
 * @property {(threadId: string|null) => Thread|undefined} thread
 * @property {(thread: Partial<Thread> & {id: string}) => void} upsert  add or update a thread
 * @property {(threadId: string) => void} bump   it changed just now: to the top
 * @property {(threadId: string) => void} forget it is gone
 * @property {() => void} render
 * @property {() => Promise<void>} refresh      catch up with other tabs' and the model's titles
 * @property {() => Promise<void>} refreshUsage the tokens left today
 * @property {(on: boolean) => void} listen    follow the list on the user's socket (on: no
 *   thread is open, so no thread socket brings the list's frames)
 * @property {() => void} close                  close it at phone width
 */
import * as api from './api.js';
import { connectThread, userSocketUrl } from './connection.js';
import { renderThreadList } from './threadlist.js';

// How close to the list's end (px) loads the next page of search results.
const LOAD_MORE_AT = 120;

/**
 * Wire the sidebar of the page under `root`.
 * @param {ParentNode} root
 * @param {{threads: Thread[], notices: import('./notices.js').Notices, openThread: SidebarThread}} options
 *   threads: the newest threads, as the page embeds them
 * @returns {Sidebar}
 */
export function createSidebar(root, { threads, notices, openThread }) {
  const $ = (selector) => root.querySelector(selector);
  const ui = {
    app: $('[data-app]'),
    list: $('[data-thread-list]'),
    scroller: $('[data-thread-scroller]'),
    empty: $('[data-threads-empty]'),
    search: $('[data-thread-search]'),
    usage: $('[data-usage]'),
    newThread: $('[data-action="new-thread"]'),
    toggle: $('[data-action="toggle-sidebar"]'),
    backdrop: $('.backdrop'),
  };
  /** @type {Map<string, Thread>} every thread the page knows, by id */
  const known = new Map(threads.map((t) => [t.id, t]));
  /** Ids shown without a search, newest first. */
  let listed = threads.map((t) => t.id);
  /** A search: `found` holds the ids it found (null: no search). */
  let search = { query: '', found: null, next: null, loading: false, timer: 0 };
  let renaming = null;

  const updatedAt = (id) => Date.parse(known.get(id).updated_at ?? 0);

  function render() {
    const shown = (search.found ?? listed).map((id) => known.get(id));
    // The list is drawn anew (a frame from another tab may do it any time): the keyboard's
    // place goes back to the same control of the same thread.
    const focused = ui.list.contains(document.activeElement) ? document.activeElement : null;
    const place = focused && [focused.closest('[data-thread-id]')?.dataset.threadId, focused.dataset.threadAction];
    renderThreadList(ui.list, shown, openThread.id(), renaming, { grouped: !search.found });
    if (place?.[0] && !renaming) {
      const item = ui.list.querySelector(`[data-thread-id="${place[0]}"]`);
      (place[1] ? item?.querySelector(`[data-thread-action="${place[1]}"]`) : item?.querySelector('.thread__link'))?.focus({ preventScroll: true });
    }
    ui.empty.hidden = shown.length > 0;
    ui.empty.textContent = search.found ? 'No thread matches.' : 'No threads yet.';
    if (renaming) {
      const input = ui.list.querySelector('.thread__rename-input');
      input?.focus();
      input?.select();
    }
  }

  function upsert(t) {
    known.set(t.id, { ...known.get(t.id), ...t });
    listed = [t.id, ...listed.filter((id) => id !== t.id)].sort((a, b) => updatedAt(b) - updatedAt(a));
    render();
    openThread.titled();
  }

  function forget(threadId) {
    known.delete(threadId);
    listed = listed.filter((id) => id !== threadId);
    if (search.found) search.found = search.found.filter((id) => id !== threadId);
  }

  function remember(found) {
    for (const t of found) known.set(t.id, { ...known.get(t.id), ...t });
    return found.map((t) => t.id);
  }

  async function finishRename(threadId, title, { save }) {
    if (renaming !== threadId) return;
    renaming = null;
    const before = known.get(threadId);
    const trimmed = title.trim();
    if (!save || !trimmed || trimmed === before?.title) {
      render();
      return;
    }
    // Show the new title now; the server's answer (or a failure) settles it.
    upsert({ ...before, id: threadId, title: trimmed });
    try {
      upsert(await api.renameThread(threadId, trimmed));
    } catch (error) {
      if (before) upsert(before);
      notices.failed(error, 'Could not rename the thread');
    }
  }

  async function pin(threadId) {
    const before = known.get(threadId);
    if (!before) return;
    // Shown at once; the server's answer (or a failure) settles it.
    upsert({ ...before, pinned: !before.pinned });
    try {
      upsert(await api.pinThread(threadId, !before.pinned));
    } catch (error) {
      upsert(before);
      notices.failed(error, before.pinned ? 'Could not unpin the thread' : 'Could not pin the thread');
    }
  }

  async function remove(threadId) {
    if (!window.confirm(`Delete “${known.get(threadId)?.title || 'Untitled'}” and all its messages?`)) return;
    try {
      await api.deleteThread(threadId);
    } catch (error) {
      if (error.status !== 404) {
        notices.failed(error, 'Could not delete the thread');
        return;
      }
    }
    forget(threadId);
    if (threadId === openThread.id()) openThread.home();
    else render();
  }

  async function runSearch() {
    const query = ui.search.value.trim();
    search.query = query;
    if (!query) {
      search = { ...search, found: null, next: null };
      render();
      return;
    }
    try {
      const page = await api.listThreads({ search: query });
      if (search.query !== query) return;
      search.found = remember(page.results ?? []);
      search.next = page.next;
      render();
    } catch (error) {
      notices.failed(error, 'Could not search', { retry: runSearch });
    }
  }

  async function loadMore() {
    const { next, query, loading } = search;
    if (!next || loading) return;
    search.loading = true;
    try {
      const page = await api.listThreads({ cursorUrl: next });
      if (search.query !== query) return;
      search.found = [...(search.found ?? []), ...remember(page.results ?? [])];
      search.next = page.next;
      render();
    } catch {
      // Scrolling again retries.
    } finally {
      search.loading = false;
    }
  }

  function openAtPhoneWidth() {
    ui.app.classList.add('app--sidebar-open');
    ui.toggle.setAttribute('aria-expanded', 'true');
    ui.backdrop.hidden = false;
    // Focus goes into the drawer, but not to search: on a phone that pops the keyboard up
    // over the list the user opened it to see.
    (ui.app.querySelector('.thread__link[aria-current="page"]') ?? ui.app.querySelector('[data-action="close-sidebar"]'))?.focus({ preventScroll: true });
  }

  function close() {
    if (!ui.app.classList.contains('app--sidebar-open')) return;
    ui.app.classList.remove('app--sidebar-open');
    ui.toggle.setAttribute('aria-expanded', 'false');
    ui.backdrop.hidden = true;
  }

  async function refresh() {
    try {
      const page = await api.listThreads();
      for (const t of (page.results ?? []).reverse()) {
        const before = known.get(t.id);
        if (!listed.includes(t.id) || before.title !== t.title || before.updated_at !== t.updated_at || before.pinned !== t.pinned) upsert(t);
      }
    } catch {
      // The list stays as it was; nothing the user asked for failed.
    }
  }

  // The user's socket, open while no thread is: other tabs' and processes' new, renamed,
  // pinned and deleted threads. A thread's own socket carries the same frames.
  let stream = null;
  function listen(on) {
    if (!on) {
      stream?.dispose();
      stream = null;
      return;
    }
    stream ??= connectThread({
      threadId: '',
      url: userSocketUrl(),
      onFrame(frame) {
        if (frame.type === 'ready') refresh(); // what changed while it was closed
        else if (frame.type === 'thread') upsert(frame.thread);
        else if (frame.type === 'thread_deleted') {
          forget(frame.thread_id);
          render();
        }
      },
    });
  }

  const threadIdOf = (node) => node.closest('[data-thread-id]').dataset.threadId;

  ui.newThread.addEventListener('click', () => {
    notices.hide();
    openThread.home();
  });
  ui.list.addEventListener('click', (event) => {
    const item = event.target.closest('[data-thread-id]');
    if (!item) return;
    const threadId = item.dataset.threadId;
    const action = event.target.closest('[data-thread-action]')?.dataset.threadAction;
    if (action === 'rename') {
      renaming = threadId;
      render();
    } else if (action === 'pin') {
      pin(threadId);
    } else if (action === 'delete') {
      remove(threadId);
    } else if (event.target.closest('a') && !(event.metaKey || event.ctrlKey || event.shiftKey || event.altKey || event.button !== 0)) {
      // A plain click stays in the page; a modified one opens a tab as links do.
      event.preventDefault();
      if (threadId !== openThread.id()) openThread.show(threadId);
      else close();
    }
  });
  ui.list.addEventListener('submit', (event) => {
    event.preventDefault();
    finishRename(threadIdOf(event.target), event.target.elements.title.value, { save: true });
  });
  ui.list.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && event.target.matches('.thread__rename-input')) {
      event.preventDefault();
      finishRename(threadIdOf(event.target), '', { save: false });
    }
  });
  ui.list.addEventListener('focusout', (event) => {
    if (event.target.matches('.thread__rename-input')) {
      finishRename(threadIdOf(event.target), event.target.value, { save: true });
    }
  });
  ui.search.addEventListener('input', () => {
    clearTimeout(search.timer);
    search.timer = setTimeout(runSearch, 250);
  });
  ui.search.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && ui.search.value) {
      event.preventDefault();
      ui.search.value = '';
      runSearch();
    }
  });
  ui.scroller.addEventListener('scroll', () => {
    const el = ui.scroller;
    if (el.scrollHeight - el.scrollTop - el.clientHeight < LOAD_MORE_AT) loadMore();
  }, { passive: true });
  ui.toggle.addEventListener('click', () => {
    if (ui.app.classList.contains('app--sidebar-open')) close();
    else openAtPhoneWidth();
  });
  for (const node of root.querySelectorAll('[data-action="close-sidebar"]')) node.addEventListener('click', close);

  return {
    thread: (threadId) => (threadId ? known.get(threadId) : undefined),
    upsert,
    bump(threadId) {
      const t = known.get(threadId);
      if (t) upsert({ ...t, updated_at: new Date().toISOString() });
    },
    forget,
    render,
    refresh,
    listen,
    async refreshUsage() {
      let usage;
      try {
        usage = await api.getUsage();
      } catch {
        return; // a hint, not worth a notice
      }
      ui.usage.hidden = usage.remaining === null;
      if (usage.remaining === null) return;
      ui.usage.textContent = `${usage.remaining.toLocaleString()} tokens left today`;
      ui.usage.title = `A daily budget of ${usage.budget.toLocaleString()} output tokens; it renews at midnight UTC.`;
    },
    close,
  };
}
