/**
 * The open thread: which thread it is, its chat client, its messages on screen (loading,
 * earlier pages, jump to the latest, the message actions), the header and the connection
 * state. It owns the open thread's id and client; the messages are the client's state
 * (client.js), and where the view sticks is the message view's (render.js).
 *
 * @typedef {object} ThreadView
 * @property {() => string|null} id            the open thread (null: the empty page)
 * @property {() => boolean} busy              a reply runs or a command awaits its answer
 * @property {() => boolean} canSend           not busy, and no thread is loading or being made
 * @property {(text: string) => Promise<void>} send  makes the thread first if there is none;
 *   throws when that fails
 * @property {() => void} stop
 * @property {() => boolean} editLast          opens the last user message's editor
 * @property {(threadId: string, options: {push: boolean}) => Promise<void>} select
 * @property {(options: {push: boolean}) => void} home
 * @property {() => void} route                show the thread the URL names
 * @property {() => void} syncHeader
 * @property {() => void} closeMenu
 * @property {() => void} start                render the page as the server embedded it
 */
import * as api from './api.js';
import { createChatClient } from './client.js';
import { createThreadState, editable, isBusy, titleFromText } from './protocol.js';
import { createMessageView, describeFailure, renderConnection } from './render.js';
import { copyText } from './richtext.js';

const THREAD_PATH = /^\/t\/([0-9a-fA-F-]{36})\/?$/;
// How close to the top (px) of the history starts loading older messages.
const LOAD_OLDER_AT = 150;
// The messages of the empty page: none, and nothing adds any (only a client's state grows).
const NO_THREAD = createThreadState([]);
const GONE = 'This thread does not exist or is not yours.';

/**
 * Wire the thread view of the page under `root`.
 * @param {ParentNode} root
 * @param {object} options
 * @param {object} options.config   the page's chat-config (threadId, messages, provider)
 * @param {number} options.maxChars
 * @param {import('./notices.js').Notices} options.notices
 * @param {import('./sidebar.js').Sidebar} options.sidebar
 * @param {import('./composer.js').Composer} options.composer
 * @returns {ThreadView}
 */
export function createThreadView(root, { config, maxChars, notices, sidebar, composer }) {
  const $ = (selector) => root.querySelector(selector);
  const ui = {
    messages: $('[data-messages]'),
    scroller: $('[data-scroller]'),
    emptyHint: $('[data-empty-hint]'),
    loadEarlier: $('[data-action="load-earlier"]'),
    jump: $('[data-action="jump"]'),
    connection: $('[data-connection]'),
    reconnect: $('[data-action="reconnect"]'),
    title: $('[data-thread-title]'),
    provider: $('[data-provider]'),
    banner: $('[data-demo-banner]'),
    exportMenu: $('[data-export-menu]'),
  };
  let threadId = config.threadId ?? null;
  /** @type {ReturnType<typeof createChatClient>|null} */
  let client = null;
  // Bumped on every thread switch so late answers for the previous thread are dropped.
  let epoch = 0;
  // The history of a thread just opened is on its way: sending waits, the client starts from it.
  let loading = false;
  // A thread is being made for the first message.
  let creating = false;
  // The cursor to older messages (`known`: whether any page has told it yet).
  let older = { known: false, url: null, loading: false };

  const state = () => client?.state ?? NO_THREAD;
  const busy = () => isBusy(state());
  const view = createMessageView(ui.messages, ui.scroller, { onFollowChange: syncJump });

  // ------------------------------------------------------------ syncing the page

  function syncComposer() {
    composer.sync();
    ui.emptyHint.hidden = loading || state().messages.length > 0;
  }

  function syncJump() {
    ui.jump.hidden = view.following() || state().messages.length === 0;
  }

  function syncHeader() {
    const title = sidebar.thread(threadId)?.title?.trim() || (threadId ? 'Untitled' : 'New chat');
    ui.title.textContent = title;
    document.title = threadId ? `${title} · Chat` : 'Chat';
    ui.exportMenu.hidden = !threadId;
    if (threadId) {
      for (const link of ui.exportMenu.querySelectorAll('[data-export]')) link.href = api.exportUrl(threadId, link.dataset.export);
    }
  }

  function syncLoadEarlier() {
    ui.loadEarlier.hidden = !older.url;
  }

  function syncConnection(connectionState) {
    renderConnection(ui.connection, connectionState);
    ui.reconnect.hidden = !(connectionState === 'reconnecting' || connectionState === 'offline') || !threadId;
  }

  /** Act on what a frame or a merge changed. */
  function applyResult(result) {
    for (const { from, to } of result.renamed) view.rename(from, to);
    view.update(state(), result.changed);
    // Give the refused text back so the user can retry without retyping it.
    for (const id of result.failed) composer.giveBack(state().byId.get(id)?.content ?? '');
    syncComposer();
    syncJump();
  }

  // ------------------------------------------------------------ the thread's client

  function connect(messages = []) {
    client?.dispose();
    client = null;
    ui.connection.hidden = !threadId;
    if (!threadId) {
      ui.reconnect.hidden = true;
      return;
    }
    const current = createChatClient({ threadId, messages });
    client = current;
    syncConnection(current.connection() ?? 'connecting');
    current.on('change', ({ result }) => applyResult(result));
    current.on('connection', ({ state: connectionState }) => syncConnection(connectionState));
    current.on('start', () => notices.announce('The assistant is replying.'));
    current.on('complete', ({ status }) => {
      notices.announce(status === 'cancelled' ? 'Reply stopped.' : 'Reply finished.');
      sidebar.bump(threadId);
      sidebar.refreshUsage();
    });
    current.on('thread', ({ thread }) => sidebar.upsert(thread));
    current.on('thread_deleted', ({ threadId: deleted }) => {
      sidebar.forget(deleted);
      if (deleted !== threadId) {
        sidebar.render();
        return;
      }
      notices.show('This thread was deleted in another tab.');
      home({ push: true });
    });
    current.on('error', (error) => {
      if (error.messageId) {
        notices.announce(describeFailure(error));
      } else if (error.code === 'network') {
        notices.show(`Could not refresh this thread: ${error.message}`, { kind: error.kind, retry: () => current.check() });
      } else {
        notices.refusal(error);
        if (error.code === 'quota_exceeded') sidebar.refreshUsage();
      }
    });
    current.on('fatal', ({ code }) => {
      if (code === 4401) {
        window.location.assign(`/accounts/login/?next=${encodeURIComponent(window.location.pathname)}`);
        return;
      }
      sidebar.forget(threadId);
      notices.show(GONE);
      home({ push: true });
    });
    view.reset(current.state);
  }

  /**
   * Reset the page to an empty view of `nextId` (null: no thread). `carry` keeps the
   * composer text, for the thread created by sending from it.
   */
  function resetThread(nextId, { carry = false } = {}) {
    const from = threadId;
    epoch += 1;
    client?.dispose();
    client = null;
    threadId = nextId;
    older = { known: false, url: null, loading: false };
    loading = false;
    view.reset(NO_THREAD);
    syncLoadEarlier();
    syncHeader();
    sidebar.render();
    composer.switchThread(from, nextId, { carry });
    syncComposer();
    sidebar.close();
  }

  function home({ push }) {
    resetThread(null);
    if (push && window.location.pathname !== '/') history.pushState({}, '', '/');
    connect();
    composer.focus();
  }

  async function select(nextId, { push }) {
    if (push) history.pushState({}, '', `/t/${nextId}/`);
    resetThread(nextId);
    const mine = epoch;
    // Sending is held until the history is in: the client starts from it.
    loading = true;
    ui.scroller.dataset.loading = 'true';
    syncComposer();
    ui.connection.hidden = false;
    syncConnection('connecting');
    try {
      const page = await api.listMessages(nextId);
      if (mine !== epoch) return;
      older = { known: true, url: page.previous, loading: false };
      connect(page.results ?? []);
      syncLoadEarlier();
    } catch (error) {
      if (mine !== epoch) return;
      if (error.status === 404) {
        sidebar.forget(nextId);
        notices.show(GONE);
        home({ push: true });
      } else {
        notices.failed(error, 'Could not load this thread', { retry: () => select(nextId, { push: false }) });
      }
    } finally {
      if (mine === epoch) {
        loading = false;
        delete ui.scroller.dataset.loading;
        syncComposer();
      }
    }
  }

  // The page embeds the newest messages but no cursor for older ones; one background fetch
  // brings the cursor (and anything newer than the page).
  async function fetchCursor() {
    if (!threadId || !client) return;
    const mine = epoch;
    try {
      const page = await api.listMessages(threadId);
      if (mine !== epoch) return;
      if (!older.known) older = { known: true, url: page.previous, loading: false };
      syncLoadEarlier();
      client.merge(page.results ?? []);
    } catch {
      // The socket's own refetches cover the messages; paging just waits for the next try.
    }
  }

  async function loadEarlier() {
    if (!older.url || older.loading || !client) return;
    const mine = epoch;
    older.loading = true;
    ui.loadEarlier.disabled = true;
    try {
      const page = await api.listMessages(threadId, { cursorUrl: older.url });
      if (mine !== epoch) return;
      older = { known: true, url: page.previous, loading: false };
      // Older messages go above: keep what the user is reading where it is.
      view.keepPosition();
      client.merge(page.results ?? []);
    } catch (error) {
      if (mine === epoch) notices.failed(error, 'Could not load earlier messages', { retry: loadEarlier });
    } finally {
      if (mine === epoch) {
        older.loading = false;
        ui.loadEarlier.disabled = false;
        syncLoadEarlier();
      }
    }
  }

  // ------------------------------------------------------------ commands

  async function send(text) {
    if (!threadId) {
      creating = true;
      syncComposer();
      try {
        // Untitled on the server: the server titles a thread from its first message (and then
        // asks the model for a better title), announcing each with a `thread` frame. Until the
        // first one, show the same cut of the message here.
        const thread = await api.createThread();
        thread.title ||= titleFromText(text);
        sidebar.upsert(thread);
        resetThread(thread.id, { carry: true });
        history.pushState({}, '', `/t/${thread.id}/`);
        older = { known: true, url: null, loading: false };
        connect();
      } finally {
        creating = false;
        syncComposer();
      }
    }
    if (!client) connect();
    // Queued by the connection until `ready` when the socket is not open yet.
    client.send(text);
    view.scrollToBottom();
    sidebar.bump(threadId);
  }

  function editLast() {
    const target = editable(state());
    if (!target || !client) return false;
    view.startEdit(target.id, (text) => {
      if (text.length > maxChars) {
        notices.tooLarge();
        return;
      }
      notices.hide();
      client?.edit(target.id, text);
      view.scrollToBottom();
    });
    return true;
  }

  async function onMessageAction(action, id, node) {
    const msg = state().byId.get(id);
    if (!msg || !client) return;
    if (action === 'copy') {
      flash(node, (await copyText(msg.content)) ? 'Copied' : 'Copy failed');
    } else if (action === 'regenerate') {
      notices.hide();
      client.regenerate();
      view.scrollToBottom();
    } else if (action === 'edit') {
      editLast();
    } else if (action === 'retry') {
      notices.hide();
      if (msg.local) {
        client.retry(id);
        composer.clearIf(msg.content);
      } else {
        client.regenerate();
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

  // ------------------------------------------------------------ events

  ui.loadEarlier.addEventListener('click', loadEarlier);
  ui.jump.addEventListener('click', () => view.scrollToBottom());
  ui.reconnect.addEventListener('click', () => client?.check());
  ui.scroller.addEventListener('scroll', () => {
    if (ui.scroller.scrollTop < LOAD_OLDER_AT && older.url) loadEarlier();
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

  return {
    id: () => threadId,
    busy,
    canSend: () => !creating && !loading && !busy(),
    send,
    stop() {
      if (client && busy()) client.stop();
    },
    editLast,
    select,
    home,
    route() {
      const match = THREAD_PATH.exec(window.location.pathname);
      if (match) {
        if (match[1] !== threadId) select(match[1], { push: false });
      } else if (threadId) {
        home({ push: false });
      }
    },
    syncHeader,
    closeMenu() {
      if (!ui.exportMenu.hidden) ui.exportMenu.open = false;
    },
    start() {
      const { name, model, offlineDemo } = config.provider ?? {};
      ui.provider.textContent = model ? `${model} (${name})` : name ?? '';
      ui.banner.hidden = !offlineDemo;
      syncHeader();
      sidebar.render();
      composer.restore({ keepTyped: true });
      connect(config.messages ?? []);
      if (!threadId) view.reset(NO_THREAD);
      syncComposer();
      syncJump();
      fetchCursor();
    },
  };
}
