// Wires the chat page: config, sidebar, composer, routing, and one connection per thread.
import * as api from './api.js';
import { connectThread } from './connection.js';
import { addLocalMessage, applyFrame, createThreadState, isBusy, makeStart, mergeMessages } from './protocol.js';
import { createMessageView, renderConnection, renderThreadList } from './render.js';

const config = JSON.parse(document.getElementById('chat-config').textContent);
const maxChars = config.maxMessageChars ?? 16000;
const $ = (selector) => document.querySelector(selector);
const ui = {
  input: $('textarea[name="message"]'),
  composer: $('[data-composer]'),
  send: $('[data-action="send"]'),
  stop: $('[data-action="stop"]'),
  newThread: $('[data-action="new-thread"]'),
  threads: $('[data-thread-list]'),
  messages: $('[data-messages]'),
  scroller: $('[data-scroller]'),
  emptyHint: $('[data-empty-hint]'),
  loadEarlier: $('[data-action="load-earlier"]'),
  connection: $('[data-connection]'),
  notice: $('[data-notice]'),
  noticeText: $('[data-notice-text]'),
  title: $('[data-thread-title]'),
  provider: $('[data-provider]'),
  banner: $('[data-demo-banner]'),
  counter: $('[data-counter]'),
};

const NOTICES = {
  busy: 'A reply is already running in this thread. Wait for it to finish or press Stop.',
  too_large: `That message is too long: the limit is ${maxChars} characters.`,
  rate_limited: 'Too many messages in a short time. Wait a moment and try again.',
};
const THREAD_PATH = /^\/t\/([0-9a-fA-F-]{36})\/?$/;

const app = {
  threadId: config.threadId ?? null,
  threads: config.threads ?? [],
  state: createThreadState(config.messages ?? []),
  conn: null,
  creating: false,
  loading: false,
  // Bumped on every thread switch so late answers for the previous thread are dropped.
  epoch: 0,
  older: { known: false, url: null },
  refreshingEpoch: null,
  refreshAgain: false,
};
const view = createMessageView(ui.messages, ui.scroller);

function showNotice(text) {
  ui.noticeText.textContent = text;
  ui.notice.hidden = false;
}

function hideNotice() {
  ui.notice.hidden = true;
}

function describeError(error, fallback) {
  if (error?.status === 401 || error?.status === 403) return `${fallback}: your session may have expired. Reload the page to log in again.`;
  return `${fallback}: ${error?.message || 'network error'}.`;
}

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

function restoreDraft() {
  let draft = '';
  try {
    draft = sessionStorage.getItem(draftKey()) ?? '';
  } catch {
    draft = '';
  }
  ui.input.value = draft;
  syncInput();
}

// Runs after every frame, so it only writes cheap properties and never reads layout.
function syncComposer() {
  const replying = isBusy(app.state);
  ui.send.disabled = replying || app.creating || app.loading;
  ui.stop.hidden = !replying;
  ui.emptyHint.hidden = app.loading || app.state.messages.length > 0;
}

function syncInput() {
  const length = ui.input.value.length;
  ui.counter.hidden = length < maxChars * 0.9;
  ui.counter.textContent = `${length} / ${maxChars}`;
  ui.counter.classList.toggle('composer__counter--over', length > maxChars);
  ui.input.style.height = 'auto';
  ui.input.style.height = `${ui.input.scrollHeight}px`;
}

function currentThread() {
  return app.threads.find((t) => t.id === app.threadId);
}

function syncHeader() {
  const title = currentThread()?.title?.trim() || (app.threadId ? 'Untitled' : 'New chat');
  ui.title.textContent = title;
  document.title = app.threadId ? `${title} · Chat` : 'Chat';
  renderThreadList(ui.threads, app.threads, app.threadId);
}

function syncLoadEarlier() {
  ui.loadEarlier.hidden = !app.older.url;
}

/** Act on what a frame or a merge changed. */
function applyResult(result) {
  for (const { from, to } of result.renamed) view.rename(from, to);
  if (result.changed.length) view.update(app.state, result.changed);
  if (result.notice) showNotice(NOTICES[result.notice.code] ?? result.notice.message);
  for (const id of result.failed) {
    // Give the refused text back so the user can retry without retyping it.
    if (!ui.input.value) {
      ui.input.value = app.state.byId.get(id)?.content ?? '';
      syncInput();
    }
  }
  if (result.gap) app.conn?.resync();
  if (result.stale) refreshMessages();
  syncComposer();
}

// Refetch the newest page and merge it: after a reconnect, frames missed while away
// (other tabs' messages, replies that ended) exist only in the database.
async function refreshMessages() {
  if (!app.threadId) return;
  if (app.refreshingEpoch === app.epoch) {
    app.refreshAgain = true;
    return;
  }
  const epoch = app.epoch;
  app.refreshingEpoch = epoch;
  try {
    const page = await api.listMessages(app.threadId);
    if (epoch !== app.epoch) return;
    if (!app.older.known) app.older = { known: true, url: page.previous };
    syncLoadEarlier();
    applyResult(mergeMessages(app.state, page.results ?? []));
  } catch (error) {
    if (epoch === app.epoch) showNotice(describeError(error, 'Could not refresh messages'));
  } finally {
    if (app.refreshingEpoch === epoch) app.refreshingEpoch = null;
    if (app.refreshAgain && epoch === app.epoch) {
      app.refreshAgain = false;
      refreshMessages();
    }
  }
}

function connect() {
  app.conn?.dispose();
  app.conn = null;
  ui.connection.hidden = !app.threadId;
  if (!app.threadId) return;
  renderConnection(ui.connection, 'connecting');
  app.conn = connectThread({
    threadId: app.threadId,
    onFrame: (frame) => applyResult(applyFrame(app.state, frame)),
    onState: (state) => renderConnection(ui.connection, state),
    onFatal: (code) => {
      if (code === 4401) {
        window.location.assign(`/accounts/login/?next=${encodeURIComponent(window.location.pathname)}`);
        return;
      }
      app.threads = app.threads.filter((t) => t.id !== app.threadId);
      showNotice('This thread does not exist or is not yours.');
      goHome({ push: true });
    },
  });
}

/**
 * Reset the page to an empty view of `threadId` (null: no thread). `carryInput` keeps the
 * composer text, for the thread created by sending from it.
 */
function resetThread(threadId, { carryInput = false } = {}) {
  if (carryInput) forgetDraft();
  else saveDraft();
  app.epoch += 1;
  app.conn?.dispose();
  app.conn = null;
  app.threadId = threadId;
  app.state = createThreadState([]);
  app.older = { known: false, url: null };
  app.refreshAgain = false;
  app.loading = false;
  view.reset(app.state);
  syncLoadEarlier();
  syncHeader();
  if (carryInput) saveDraft();
  else restoreDraft();
  syncComposer();
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
  // Sending is held until the history is in: the new state would drop the optimistic message.
  app.loading = true;
  ui.scroller.dataset.loading = 'true';
  syncComposer();
  renderConnection(ui.connection, 'connecting');
  ui.connection.hidden = false;
  try {
    const page = await api.listMessages(threadId);
    if (epoch !== app.epoch) return;
    app.state = createThreadState(page.results ?? []);
    app.older = { known: true, url: page.previous };
    view.reset(app.state);
    syncLoadEarlier();
    connect();
  } catch (error) {
    if (epoch !== app.epoch) return;
    if (error.status === 404) {
      app.threads = app.threads.filter((t) => t.id !== threadId);
      showNotice('This thread does not exist or is not yours.');
      goHome({ push: true });
    } else {
      showNotice(describeError(error, 'Could not load this thread'));
    }
  } finally {
    if (epoch === app.epoch) {
      app.loading = false;
      delete ui.scroller.dataset.loading;
      syncComposer();
    }
  }
}

async function loadEarlier() {
  if (!app.older.url) return;
  const epoch = app.epoch;
  ui.loadEarlier.disabled = true;
  try {
    const page = await api.listMessages(app.threadId, app.older.url);
    if (epoch !== app.epoch) return;
    app.older = { known: true, url: page.previous };
    applyResult(mergeMessages(app.state, page.results ?? []));
  } catch (error) {
    showNotice(describeError(error, 'Could not load earlier messages'));
  } finally {
    ui.loadEarlier.disabled = false;
    syncLoadEarlier();
  }
}

function titleFrom(text) {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > 60 ? `${line.slice(0, 59)}…` : line;
}

function bumpThread(threadId) {
  const thread = app.threads.find((t) => t.id === threadId);
  if (!thread) return;
  thread.updated_at = new Date().toISOString();
  app.threads = [thread, ...app.threads.filter((t) => t !== thread)];
  syncHeader();
}

async function send() {
  const text = ui.input.value.trim();
  if (!text || app.creating || app.loading || isBusy(app.state)) return;
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
      const thread = await api.createThread(titleFrom(text));
      app.threads = [thread, ...app.threads.filter((t) => t.id !== thread.id)];
      resetThread(thread.id, { carryInput: true });
      history.pushState({}, '', `/t/${thread.id}/`);
      connect();
    } catch (error) {
      if (!ui.input.value) ui.input.value = text;
      syncInput();
      showNotice(describeError(error, 'Could not create a thread'));
      return;
    } finally {
      app.creating = false;
      syncComposer();
    }
  }
  const { command, message } = makeStart(text);
  applyResult(addLocalMessage(app.state, message));
  if (!app.conn) connect();
  // Queued by the connection until `ready` when the socket is not open yet.
  app.conn.send(command);
  view.scrollToBottom();
  bumpThread(app.threadId);
}

async function renameThread(threadId) {
  const thread = app.threads.find((t) => t.id === threadId);
  const title = window.prompt('Rename thread', thread?.title ?? '');
  if (title === null || !title.trim()) return;
  try {
    const updated = await api.renameThread(threadId, title.trim());
    app.threads = app.threads.map((t) => (t.id === threadId ? { ...t, ...updated } : t));
    syncHeader();
  } catch (error) {
    showNotice(describeError(error, 'Could not rename the thread'));
  }
}

async function deleteThread(threadId) {
  const thread = app.threads.find((t) => t.id === threadId);
  if (!window.confirm(`Delete “${thread?.title || 'Untitled'}” and all its messages?`)) return;
  try {
    await api.deleteThread(threadId);
  } catch (error) {
    if (error.status !== 404) {
      showNotice(describeError(error, 'Could not delete the thread'));
      return;
    }
  }
  app.threads = app.threads.filter((t) => t.id !== threadId);
  if (threadId === app.threadId) goHome({ push: true });
  else syncHeader();
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

ui.composer.addEventListener('submit', (event) => {
  event.preventDefault();
  send();
});
ui.input.addEventListener('keydown', (event) => {
  // isComposing: Enter also confirms an IME composition (Japanese, Chinese, ...).
  if (event.key === 'Enter' && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
    event.preventDefault();
    send();
  }
});
ui.input.addEventListener('input', () => {
  saveDraft();
  syncInput();
});
ui.stop.addEventListener('click', () => app.conn?.send({ command: 'stop' }));
ui.newThread.addEventListener('click', () => {
  hideNotice();
  goHome({ push: true });
});
ui.loadEarlier.addEventListener('click', loadEarlier);
ui.notice.querySelector('[data-action="dismiss-notice"]').addEventListener('click', hideNotice);
ui.threads.addEventListener('click', (event) => {
  const item = event.target.closest('[data-thread-id]');
  if (!item) return;
  const action = event.target.closest('[data-thread-action]')?.dataset.threadAction;
  if (action === 'rename') renameThread(item.dataset.threadId);
  else if (action === 'delete') deleteThread(item.dataset.threadId);
  else if (event.target.closest('a') && !(event.metaKey || event.ctrlKey || event.shiftKey || event.altKey || event.button !== 0)) {
    event.preventDefault();
    if (item.dataset.threadId !== app.threadId) selectThread(item.dataset.threadId, { push: true });
  }
});
window.addEventListener('popstate', route);

renderProvider();
syncHeader();
view.reset(app.state);
restoreDraft();
syncComposer();
connect();
// chat_config has no cursor for older messages, and the page may be older than the socket's
// first frame; one background fetch answers both.
refreshMessages();
