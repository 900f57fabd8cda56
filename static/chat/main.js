// Wires the chat page: config, sidebar, composer, routing, and one chat client per thread.
import * as api from './api.js';
import { createChatClient } from './client.js';
import { createThreadState, editable, isBusy } from './protocol.js';
import { createMessageView, describeFailure, renderConnection, renderThreadList } from './render.js';
import { copyText } from './richtext.js';

const config = JSON.parse(document.getElementById('chat-config').textContent);
const maxChars = config.maxMessageChars ?? 16000;
const $ = (selector) => document.querySelector(selector);
const ui = {
  app: $('[data-app]'),
  input: $('textarea[name="message"]'),
  composer: $('[data-composer]'),
  send: $('[data-action="send"]'),
  stop: $('[data-action="stop"]'),
  newThread: $('[data-action="new-thread"]'),
  threads: $('[data-thread-list]'),
  threadScroller: $('[data-thread-scroller]'),
  threadsEmpty: $('[data-threads-empty]'),
  search: $('[data-thread-search]'),
  messages: $('[data-messages]'),
  scroller: $('[data-scroller]'),
  emptyHint: $('[data-empty-hint]'),
  loadEarlier: $('[data-action="load-earlier"]'),
  jump: $('[data-action="jump"]'),
  connection: $('[data-connection]'),
  reconnect: $('[data-action="reconnect"]'),
  notice: $('[data-notice]'),
  noticeText: $('[data-notice-text]'),
  noticeRetry: $('[data-action="notice-retry"]'),
  title: $('[data-thread-title]'),
  provider: $('[data-provider]'),
  banner: $('[data-demo-banner]'),
  counter: $('[data-counter]'),
  usage: $('[data-usage]'),
  exportMenu: $('[data-export-menu]'),
  announcer: $('[data-announcer]'),
  toggleSidebar: $('[data-action="toggle-sidebar"]'),
  backdrop: $('.backdrop'),
};

const NOTICES = {
  busy: 'A reply is already running in this thread. Wait for it to finish or press Stop.',
  too_large: `That message is too long: the limit is ${maxChars} characters.`,
  rate_limited: 'Too many messages in a short time. Wait a moment, then retry.',
  quota_exceeded: "Today's token budget is spent. It renews at midnight UTC.",
  too_many_sockets: 'Too many chat tabs are open for your account. Close some; this one keeps retrying.',
};
const THREAD_PATH = /^\/t\/([0-9a-fA-F-]{36})\/?$/;
// How close to the top (px) of the history starts loading older messages.
const LOAD_OLDER_AT = 150;

const app = {
  threadId: config.threadId ?? null,
  threads: config.threads ?? [],
  /** @type {ReturnType<typeof createChatClient>|null} */
  client: null,
  // The state shown when there is no thread yet (the empty page).
  blank: createThreadState([]),
  creating: false,
  loading: false,
  // Bumped on every thread switch so late answers for the previous thread are dropped.
  epoch: 0,
  older: { known: false, url: null, loading: false },
  search: { query: '', results: null, next: null, loading: false, timer: 0 },
  renaming: null,
  following: true,
};

const state = () => app.client?.state ?? app.blank;
const view = createMessageView(ui.messages, ui.scroller, {
  onFollowChange: (following) => {
    app.following = following;
    syncJump();
  },
});

// ---------------------------------------------------------------- notices and announcements

let noticeRetry = null;

/**
 * Show a notice; `retry`, when given, is offered as a button.
 * @param {string} text
 * @param {{retry?: () => void, kind?: string}} [options]
 */
function showNotice(text, { retry = null, kind = 'request' } = {}) {
  ui.noticeText.textContent = text;
  ui.notice.dataset.kind = kind;
  noticeRetry = retry;
  ui.noticeRetry.hidden = !retry;
  ui.notice.hidden = false;
}

function hideNotice() {
  ui.notice.hidden = true;
  noticeRetry = null;
}

function announce(text) {
  ui.announcer.textContent = text;
}

function describeError(error, fallback) {
  if (error?.status === 401 || error?.status === 403) return `${fallback}: your session may have expired. Reload the page to log in again.`;
  if (error?.status >= 500) return `${fallback}: the server failed (${error.status}).`;
  if (error?.status === 429) return `${fallback}: too many requests; wait a moment.`;
  return `${fallback}: ${error?.status ? error.message : 'network problem'}.`;
}

function errorKind(error) {
  if (!error?.status) return 'network';
  if (error.status === 429) return 'rate_limit';
  return error.status >= 500 ? 'server' : 'request';
}

// ---------------------------------------------------------------- drafts

function draftKey() {
  return `chat-draft:${app.threadId ?? 'new'}`;
}

// A draft survives reloads and thread switches, so nothing typed is lost.
function saveDraft() {
  try {
    if (ui.input.value) sessionStorage.setItem(draftKey(), ui.input.value);
    else sessionStorage.removeItem(draftKey());
  } catch {
    // Storage can be disabled or full; the draft is a convenience.
  }
}

function forgetDraft() {
  try {
    sessionStorage.removeItem(draftKey());
  } catch {
    // As above.
  }
}

function restoreDraft({ keepTyped = false } = {}) {
  // Text typed before this script ran is newer than any saved draft.
  if (keepTyped && ui.input.value) {
    syncInput();
    return;
  }
  let draft = '';
  try {
    draft = sessionStorage.getItem(draftKey()) ?? '';
  } catch {
    draft = '';
  }
  ui.input.value = draft;
  syncInput();
}

// ---------------------------------------------------------------- syncing the page

// Runs after every frame, so it only writes cheap properties and never reads layout.
function syncComposer() {
  const replying = isBusy(state());
  ui.send.disabled = replying || app.creating || app.loading;
  ui.stop.hidden = !replying;
  ui.emptyHint.hidden = app.loading || state().messages.length > 0;
}

function syncInput() {
  const length = ui.input.value.length;
  ui.counter.hidden = length < maxChars * 0.9;
  ui.counter.textContent = `${length} / ${maxChars}`;
  ui.counter.classList.toggle('composer__counter--over', length > maxChars);
  ui.input.style.height = 'auto';
  ui.input.style.height = `${ui.input.scrollHeight}px`;
}

function syncJump() {
  ui.jump.hidden = app.following || state().messages.length === 0;
}

function currentThread() {
  return app.threads.find((t) => t.id === app.threadId);
}

function syncThreadList() {
  const shown = app.search.results ?? app.threads;
  renderThreadList(ui.threads, shown, app.threadId, app.renaming);
  const empty = shown.length === 0;
  ui.threadsEmpty.hidden = !empty;
  ui.threadsEmpty.textContent = app.search.results ? 'No thread matches.' : 'No threads yet.';
  if (app.renaming) {
    const input = ui.threads.querySelector('.thread__rename-input');
    input?.focus();
    input?.select();
  }
}

function syncHeader() {
  const title = currentThread()?.title?.trim() || (app.threadId ? 'Untitled' : 'New chat');
  ui.title.textContent = title;
  document.title = app.threadId ? `${title} · Chat` : 'Chat';
  ui.exportMenu.hidden = !app.threadId;
  if (app.threadId) {
    for (const link of ui.exportMenu.querySelectorAll('[data-export]')) link.href = api.exportUrl(app.threadId, link.dataset.export);
  }
  syncThreadList();
}

function syncLoadEarlier() {
  ui.loadEarlier.hidden = !app.older.url;
}

function syncConnection(connectionState) {
  renderConnection(ui.connection, connectionState);
  ui.reconnect.hidden = !(connectionState === 'reconnecting' || connectionState === 'offline') || !app.threadId;
}

/** Act on what a frame or a merge changed. */
function applyResult(result) {
  for (const { from, to } of result.renamed) view.rename(from, to);
  view.update(state(), result.changed);
  for (const id of result.failed) {
    // Give the refused text back so the user can retry without retyping it.
    if (!ui.input.value) {
      ui.input.value = state().byId.get(id)?.content ?? '';
      syncInput();
    }
  }
  syncComposer();
  syncJump();
}

// ---------------------------------------------------------------- the thread's client

function upsertThread(thread) {
  const known = app.threads.find((t) => t.id === thread.id);
  app.threads = [{ ...known, ...thread }, ...app.threads.filter((t) => t.id !== thread.id)].sort(
    (a, b) => Date.parse(b.updated_at ?? 0) - Date.parse(a.updated_at ?? 0),
  );
  if (app.search.results) app.search.results = app.search.results.map((t) => (t.id === thread.id ? { ...t, ...thread } : t));
  syncHeader();
}

function connect(messages = []) {
  app.client?.dispose();
  app.client = null;
  ui.connection.hidden = !app.threadId;
  if (!app.threadId) {
    ui.reconnect.hidden = true;
    return;
  }
  const client = createChatClient({ threadId: app.threadId, messages });
  app.client = client;
  syncConnection(client.connection() ?? 'connecting');
  client.on('change', ({ result }) => applyResult(result));
  client.on('connection', ({ state: connectionState }) => syncConnection(connectionState));
  client.on('start', () => announce('The assistant is replying.'));
  client.on('complete', ({ status }) => {
    announce(status === 'cancelled' ? 'Reply stopped.' : 'Reply finished.');
    bumpThread(app.threadId);
    refreshUsage();
  });
  client.on('thread', ({ thread }) => upsertThread(thread));
  client.on('error', (error) => {
    if (error.messageId) {
      announce(describeFailure(error));
      return;
    }
    if (error.code === 'network') {
      showNotice(`Could not refresh this thread: ${error.message}`, { kind: 'network', retry: () => client.check() });
      return;
    }
    showNotice(NOTICES[error.code] ?? error.message, { kind: error.kind });
    if (error.code === 'quota_exceeded') refreshUsage();
  });
  client.on('fatal', ({ code }) => {
    if (code === 4401) {
      window.location.assign(`/accounts/login/?next=${encodeURIComponent(window.location.pathname)}`);
      return;
    }
    app.threads = app.threads.filter((t) => t.id !== app.threadId);
    showNotice('This thread does not exist or is not yours.');
    goHome({ push: true });
  });
  view.reset(client.state);
}

/**
 * Reset the page to an empty view of `threadId` (null: no thread). `carryInput` keeps the
 * composer text, for the thread created by sending from it.
 */
function resetThread(threadId, { carryInput = false } = {}) {
  if (carryInput) forgetDraft();
  else saveDraft();
  app.epoch += 1;
  app.client?.dispose();
  app.client = null;
  app.threadId = threadId;
  app.blank = createThreadState([]);
  app.older = { known: false, url: null, loading: false };
  app.loading = false;
  view.reset(app.blank);
  syncLoadEarlier();
  syncHeader();
  if (carryInput) saveDraft();
  else restoreDraft();
  syncComposer();
  closeSidebar();
}

function goHome({ push }) {
  resetThread(null);
  if (push && window.location.pathname !== '/') history.pushState({}, '', '/');
  connect();
  ui.input.focus();
}

async function selectThread(threadId, { push }) {
  if (push) history.pushState({}, '', `/t/${threadId}/`);
  resetThread(threadId);
  const epoch = app.epoch;
  // Sending is held until the history is in: the client starts from it.
  app.loading = true;
  ui.scroller.dataset.loading = 'true';
  syncComposer();
  ui.connection.hidden = false;
  syncConnection('connecting');
  try {
    const page = await api.listMessages(threadId);
    if (epoch !== app.epoch) return;
    app.older = { known: true, url: page.previous, loading: false };
    connect(page.results ?? []);
    syncLoadEarlier();
  } catch (error) {
    if (epoch !== app.epoch) return;
    if (error.status === 404) {
      app.threads = app.threads.filter((t) => t.id !== threadId);
      showNotice('This thread does not exist or is not yours.');
      goHome({ push: true });
    } else {
      showNotice(describeError(error, 'Could not load this thread'), {
        kind: errorKind(error),
        retry: () => selectThread(threadId, { push: false }),
      });
    }
  } finally {
    if (epoch === app.epoch) {
      app.loading = false;
      delete ui.scroller.dataset.loading;
      syncComposer();
    }
  }
}

// The page embeds the newest messages but no cursor for older ones; one background fetch
// brings the cursor (and anything newer than the page).
async function fetchCursor() {
  if (!app.threadId || !app.client) return;
  const epoch = app.epoch;
  try {
    const page = await api.listMessages(app.threadId);
    if (epoch !== app.epoch) return;
    if (!app.older.known) app.older = { known: true, url: page.previous, loading: false };
    syncLoadEarlier();
    app.client.merge(page.results ?? []);
  } catch {
    // The socket's own refetches cover the messages; paging just waits for the next try.
  }
}

async function loadEarlier() {
  if (!app.older.url || app.older.loading || !app.client) return;
  const epoch = app.epoch;
  app.older.loading = true;
  ui.loadEarlier.disabled = true;
  try {
    const page = await api.listMessages(app.threadId, app.older.url);
    if (epoch !== app.epoch) return;
    app.older = { known: true, url: page.previous, loading: false };
    // Older messages go above: keep what the user is reading where it is.
    view.keepPosition();
    app.client.merge(page.results ?? []);
  } catch (error) {
    if (epoch === app.epoch) showNotice(describeError(error, 'Could not load earlier messages'), { kind: errorKind(error), retry: loadEarlier });
  } finally {
    if (epoch === app.epoch) {
      app.older.loading = false;
      ui.loadEarlier.disabled = false;
      syncLoadEarlier();
    }
  }
}

function titleFrom(text) {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > 60 ? `${line.slice(0, 59)}…` : line;
}

function bumpThread(threadId) {
  const thread = app.threads.find((t) => t.id === threadId);
  if (!thread) return;
  upsertThread({ ...thread, updated_at: new Date().toISOString() });
}

// ---------------------------------------------------------------- commands

async function send() {
  const text = ui.input.value.trim();
  if (!text || app.creating || app.loading || isBusy(state())) return;
  if (text.length > maxChars) {
    showNotice(NOTICES.too_large);
    return;
  }
  hideNotice();
  // Clear now so anything typed while the thread is created is not wiped afterwards.
  ui.input.value = '';
  saveDraft();
  syncInput();
  if (!app.threadId) {
    app.creating = true;
    syncComposer();
    try {
      // Untitled on the server: the server titles a thread from its first message (and then
      // asks the model for a better title), announcing each with a `thread` frame. Until the
      // first one, show the same cut of the message here.
      const thread = await api.createThread();
      thread.title ||= titleFrom(text);
      app.threads = [thread, ...app.threads.filter((t) => t.id !== thread.id)];
      resetThread(thread.id, { carryInput: true });
      history.pushState({}, '', `/t/${thread.id}/`);
      app.older = { known: true, url: null, loading: false };
      connect();
    } catch (error) {
      if (!ui.input.value) ui.input.value = text;
      syncInput();
      showNotice(describeError(error, 'Could not create a thread'), { kind: errorKind(error), retry: send });
      return;
    } finally {
      app.creating = false;
      syncComposer();
    }
  }
  if (!app.client) connect();
  // Queued by the connection until `ready` when the socket is not open yet.
  app.client.send(text);
  view.scrollToBottom();
  bumpThread(app.threadId);
}

function stop() {
  if (app.client && isBusy(state())) app.client.stop();
}

function editLast() {
  const target = editable(state());
  if (!target || !app.client) return false;
  view.startEdit(target.id, (text) => {
    if (text.length > maxChars) {
      showNotice(NOTICES.too_large);
      return;
    }
    hideNotice();
    app.client?.edit(target.id, text);
    view.scrollToBottom();
  });
  return true;
}

async function onMessageAction(action, id, node) {
  const msg = state().byId.get(id);
  if (!msg || !app.client) return;
  if (action === 'copy') {
    const ok = await copyText(msg.content);
    flash(node, ok ? 'Copied' : 'Copy failed');
  } else if (action === 'regenerate') {
    hideNotice();
    app.client.regenerate();
    view.scrollToBottom();
  } else if (action === 'edit') {
    editLast();
  } else if (action === 'retry') {
    hideNotice();
    if (msg.local) {
      app.client.retry(id);
      if (ui.input.value === msg.content) {
        ui.input.value = '';
        saveDraft();
        syncInput();
      }
    } else {
      app.client.regenerate();
    }
  }
}

function flash(node, text) {
  const before = node.textContent;
  node.textContent = text;
  node.disabled = true;
  setTimeout(() => {
    node.textContent = before;
    node.disabled = false;
  }, 1200);
}

// ---------------------------------------------------------------- threads

function startRename(threadId) {
  app.renaming = threadId;
  syncThreadList();
}

async function finishRename(threadId, title, { save }) {
  if (app.renaming !== threadId) return;
  app.renaming = null;
  const thread = app.threads.find((t) => t.id === threadId) ?? app.search.results?.find((t) => t.id === threadId);
  const trimmed = title.trim();
  if (!save || !trimmed || trimmed === thread?.title) {
    syncThreadList();
    return;
  }
  // Show the new title now; the server's answer (or a failure) settles it.
  upsertThread({ ...thread, id: threadId, title: trimmed });
  try {
    upsertThread(await api.renameThread(threadId, trimmed));
  } catch (error) {
    if (thread) upsertThread(thread);
    showNotice(describeError(error, 'Could not rename the thread'), { kind: errorKind(error) });
  }
}

async function deleteThread(threadId) {
  const thread = app.threads.find((t) => t.id === threadId) ?? app.search.results?.find((t) => t.id === threadId);
  if (!window.confirm(`Delete “${thread?.title || 'Untitled'}” and all its messages?`)) return;
  try {
    await api.deleteThread(threadId);
  } catch (error) {
    if (error.status !== 404) {
      showNotice(describeError(error, 'Could not delete the thread'), { kind: errorKind(error) });
      return;
    }
  }
  app.threads = app.threads.filter((t) => t.id !== threadId);
  if (app.search.results) app.search.results = app.search.results.filter((t) => t.id !== threadId);
  if (threadId === app.threadId) goHome({ push: true });
  else syncThreadList();
}

async function runSearch() {
  const query = ui.search.value.trim();
  app.search.query = query;
  if (!query) {
    app.search = { ...app.search, results: null, next: null };
    syncThreadList();
    return;
  }
  try {
    const page = await api.listThreads({ search: query });
    if (app.search.query !== query) return;
    app.search.results = page.results ?? [];
    app.search.next = page.next;
    syncThreadList();
  } catch (error) {
    showNotice(describeError(error, 'Could not search'), { kind: errorKind(error), retry: runSearch });
  }
}

async function loadMoreThreads() {
  const { next, query, loading } = app.search;
  if (!next || loading) return;
  app.search.loading = true;
  try {
    const page = await api.listThreads({ cursorUrl: next });
    if (app.search.query !== query) return;
    app.search.results = [...(app.search.results ?? []), ...(page.results ?? [])];
    app.search.next = page.next;
    syncThreadList();
  } catch {
    // Scrolling again retries.
  } finally {
    app.search.loading = false;
  }
}

// Titles change in other tabs and by the model; the first page brings them up to date.
/** The sidebar's "tokens left today", when the server has a daily budget. */
async function refreshUsage() {
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
}

async function refreshThreads() {
  try {
    const page = await api.listThreads();
    for (const thread of (page.results ?? []).reverse()) {
      const known = app.threads.find((t) => t.id === thread.id);
      if (!known || known.title !== thread.title || known.updated_at !== thread.updated_at) upsertThread(thread);
    }
  } catch {
    // The list stays as it was; nothing the user asked for failed.
  }
}

function route() {
  const match = THREAD_PATH.exec(window.location.pathname);
  if (match) {
    if (match[1] !== app.threadId) selectThread(match[1], { push: false });
  } else if (app.threadId) {
    goHome({ push: false });
  }
}

function renderProvider() {
  const { name, model, offlineDemo } = config.provider ?? {};
  ui.provider.textContent = model ? `${model} (${name})` : name ?? '';
  ui.banner.hidden = !offlineDemo;
}

// ---------------------------------------------------------------- phone sidebar

function openSidebar() {
  ui.app.classList.add('app--sidebar-open');
  ui.toggleSidebar.setAttribute('aria-expanded', 'true');
  ui.backdrop.hidden = false;
  ui.search.focus();
}

function closeSidebar() {
  if (!ui.app.classList.contains('app--sidebar-open')) return;
  ui.app.classList.remove('app--sidebar-open');
  ui.toggleSidebar.setAttribute('aria-expanded', 'false');
  ui.backdrop.hidden = true;
}

// ---------------------------------------------------------------- events

ui.composer.addEventListener('submit', (event) => {
  event.preventDefault();
  send();
});
ui.input.addEventListener('keydown', (event) => {
  // isComposing: Enter also confirms an IME composition (Japanese, Chinese, ...).
  if (event.key === 'Enter' && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
    event.preventDefault();
    send();
  } else if (event.key === 'Escape' && isBusy(state())) {
    event.preventDefault();
    stop();
  } else if (event.key === 'ArrowUp' && !ui.input.value && editLast()) {
    event.preventDefault();
  }
});
ui.input.addEventListener('input', () => {
  saveDraft();
  syncInput();
});
ui.stop.addEventListener('click', stop);
ui.newThread.addEventListener('click', () => {
  hideNotice();
  goHome({ push: true });
});
ui.loadEarlier.addEventListener('click', loadEarlier);
ui.jump.addEventListener('click', () => view.scrollToBottom());
ui.reconnect.addEventListener('click', () => app.client?.check());
ui.notice.querySelector('[data-action="dismiss-notice"]').addEventListener('click', hideNotice);
ui.noticeRetry.addEventListener('click', () => {
  const retry = noticeRetry;
  hideNotice();
  retry?.();
});
ui.scroller.addEventListener('scroll', () => {
  if (ui.scroller.scrollTop < LOAD_OLDER_AT && app.older.url) loadEarlier();
}, { passive: true });
ui.messages.addEventListener('click', async (event) => {
  const codeCopy = event.target.closest('[data-copy-code]');
  if (codeCopy) {
    const code = codeCopy.closest('.codeblock')?.querySelector('code');
    flash(codeCopy, (await copyText(code?.textContent ?? '')) ? 'Copied' : 'Copy failed');
    return;
  }
  const actionNode = event.target.closest('[data-message-action]');
  const id = actionNode?.closest('[data-message-id]')?.dataset.messageId;
  if (actionNode && id) onMessageAction(actionNode.dataset.messageAction, id, actionNode);
});
ui.threads.addEventListener('click', (event) => {
  const item = event.target.closest('[data-thread-id]');
  if (!item) return;
  const action = event.target.closest('[data-thread-action]')?.dataset.threadAction;
  if (action === 'rename') startRename(item.dataset.threadId);
  else if (action === 'delete') deleteThread(item.dataset.threadId);
  else if (event.target.closest('a') && !(event.metaKey || event.ctrlKey || event.shiftKey || event.altKey || event.button !== 0)) {
    event.preventDefault();
    if (item.dataset.threadId !== app.threadId) selectThread(item.dataset.threadId, { push: true });
    else closeSidebar();
  }
});
ui.threads.addEventListener('submit', (event) => {
  event.preventDefault();
  const item = event.target.closest('[data-thread-id]');
  finishRename(item.dataset.threadId, event.target.elements.title.value, { save: true });
});
ui.threads.addEventListener('keydown', (event) => {
  if (event.key === 'Escape' && event.target.matches('.thread__rename-input')) {
    event.preventDefault();
    finishRename(event.target.closest('[data-thread-id]').dataset.threadId, '', { save: false });
  }
});
ui.threads.addEventListener('focusout', (event) => {
  if (event.target.matches('.thread__rename-input')) {
    finishRename(event.target.closest('[data-thread-id]').dataset.threadId, event.target.value, { save: true });
  }
});
ui.search.addEventListener('input', () => {
  clearTimeout(app.search.timer);
  app.search.timer = setTimeout(runSearch, 250);
});
ui.search.addEventListener('keydown', (event) => {
  if (event.key === 'Escape' && ui.search.value) {
    event.preventDefault();
    ui.search.value = '';
    runSearch();
  }
});
ui.threadScroller.addEventListener('scroll', () => {
  const el = ui.threadScroller;
  if (el.scrollHeight - el.scrollTop - el.clientHeight < 120) loadMoreThreads();
}, { passive: true });
ui.toggleSidebar.addEventListener('click', () => {
  if (ui.app.classList.contains('app--sidebar-open')) closeSidebar();
  else openSidebar();
});
for (const node of document.querySelectorAll('[data-action="close-sidebar"]')) node.addEventListener('click', closeSidebar);
document.addEventListener('keydown', (event) => {
  if (event.key === 'Escape') {
    closeSidebar();
    if (!ui.exportMenu.hidden) ui.exportMenu.open = false;
  }
  if ((event.ctrlKey || event.metaKey) && event.shiftKey && event.key.toLowerCase() === 'o') {
    event.preventDefault();
    hideNotice();
    goHome({ push: true });
  }
});
document.addEventListener('visibilitychange', () => {
  // The client re-checks its own thread; the sidebar catches up with other tabs' changes.
  if (document.visibilityState === 'visible') {
    refreshThreads();
    refreshUsage();
  }
});
window.addEventListener('popstate', route);

renderProvider();
syncHeader();
restoreDraft({ keepTyped: true });
connect(config.messages ?? []);
if (!app.threadId) view.reset(app.blank);
syncComposer();
syncJump();
fetchCursor();
refreshUsage();
// Tests and automation wait for this before they type.
document.documentElement.dataset.ready = 'true';
