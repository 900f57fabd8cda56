/**
 * The open thread: which thread it is and its chat client, and the wiring between them and
 * the parts that show it. It owns the open thread's id and client, opening a thread (from the
 * URL, the sidebar or a first message) and going home, and what the client's events do to the
 * page, and which model the open thread (or the new chat) answers with. The messages are the
 * client's state (client.js); the parts draw them:
 *   messageview.js      the messages on screen, and where the view sticks
 *   messageactions.js   copy, regenerate, edit and retry on a message
 *   feedback.js         the thumbs on a reply, and the tags and comment after one
 *   earlierpages.js     the cursor to earlier messages, and loading them
 *   threadheader.js     the title, the model picker, the export menu
 *   connectionbadge.js  the connection state, and Retry now
 *
 * @typedef {object} ThreadView
 * @property {() => string|null} id            the open thread (null: the empty page)
 * @property {() => boolean} busy              a reply runs or a command awaits its answer
 * @property {() => boolean} canSend           not busy, and no thread is loading or being made
 * @property {(text: string, options?: {attachments?: import('./protocol.js').Attachment[]}) => Promise<void>} send
 *   makes the thread first if there is none; throws when that fails
 * @property {() => import('./models.js').ModelInfo|undefined} model  the model of the next reply
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
import { createConnectionBadge } from './connectionbadge.js';
import { createEarlierPages } from './earlierpages.js';
import { createFeedback } from './feedback.js';
import { createMessageActions } from './messageactions.js';
import { createMessageView } from './messageview.js';
import { createModelCatalog } from './models.js';
import { describeFailure } from './notices.js';
import { createThreadState, errorClass, isBusy, titleFromText } from './protocol.js';
import { createThreadHeader } from './threadheader.js';

const THREAD_PATH = /^\/t\/([0-9a-fA-F-]{36})\/?$/;
// The messages of the empty page: none, and nothing adds any (only a client's state grows).
const NO_THREAD = createThreadState([]);
const GONE = 'This thread does not exist or is not yours.';

/**
 * Wire the thread view of the page under `root`.
 * @param {ParentNode} root
 * @param {object} options
 * @param {object} options.config   the page's chat-config (threadId, messages, provider,
 *   models, preferredModel, feedbackTags)
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
    jump: $('[data-action="jump"]'),
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
  const models = createModelCatalog(config.models ?? [], config.preferredModel ?? null);
  // The model the open thread's next reply uses (a new chat's: the one it will be made with).
  let model = null;
  // A model picked that the server may not have made the thread's yet (a new chat, or a
  // PATCH on its way): the next `start` names it, so a message sent at once uses it too.
  let picked = null;

  const state = () => client?.state ?? NO_THREAD;
  const busy = () => isBusy(state());
  const view = createMessageView(ui.messages, ui.scroller, {
    onFollowChange: syncJump,
    context: { modelLabel: (id) => models.label(id) },
  });
  const actions = createMessageActions(ui.messages, {
    state, client: () => client, view, maxChars, notices, composer,
  });
  const feedback = createFeedback(ui.messages, {
    state, client: () => client, view, tags: config.feedbackTags ?? [], notices,
  });
  const earlier = createEarlierPages(root, {
    load: (cursorUrl) => api.listMessages(threadId, { cursorUrl }),
    onPage(messages) {
      // Older messages go above: keep what the user is reading where it is.
      view.keepPosition();
      client?.merge(messages);
    },
    notices,
  });
  const header = createThreadHeader(root, {
    titleOf: (id) => sidebar.thread(id)?.title,
    models,
    onPick: pickModel,
  });
  const badge = createConnectionBadge(root, { onRetry: () => client?.check() });

  // ------------------------------------------------------------ syncing the page

  function syncComposer() {
    composer.sync();
    ui.emptyHint.hidden = loading || state().messages.length > 0;
  }

  function syncJump() {
    ui.jump.hidden = view.following() || state().messages.length === 0;
  }

  /** Act on what a frame or a merge changed. */
  function applyResult(result) {
    for (const { from, to } of result.renamed) {
      view.rename(from, to);
      // A message of ours saved with its files: the composer lets go of their chips.
      const saved = state().byId.get(to);
      if (saved?.role === 'user' && saved.attachments?.length) composer.attached(saved.attachments);
    }
    view.update(state(), result.changed);
    // A refused message offers one way to send it again: its Retry when retrying as it is can
    // help (the box stays empty, so Enter cannot send it a second time), else its text and
    // files back in the composer, to change and send.
    for (const id of result.failed) {
      const refused = state().byId.get(id);
      if (refused?.error && errorClass(refused.error).recoverable) continue;
      composer.giveBack(refused?.content ?? '', refused?.attachments ?? []);
    }
    syncComposer();
    syncJump();
  }

  // ------------------------------------------------------------ the model

  function showModel(next) {
    model = next;
    header.showModel(model);
    // Whether the model can see images decides the composer's hint.
    composer.sync();
  }

  /** The open thread's model as the page knows it: the sidebar's copy of the thread. */
  function threadModel(id) {
    const known = sidebar.thread(id)?.model;
    if (known) return known;
    // Until the thread is fetched: the model of its newest reply, else a new thread's.
    const replies = state().messages.filter((m) => m.role === 'assistant' && m.model);
    return replies.at(-1)?.model ?? models.preferred();
  }

  // The thread object may be missing from the sidebar (made in another tab since the page
  // was served): fetch it for its model.
  async function fetchThreadModel(id) {
    if (sidebar.thread(id)?.model) return;
    const mine = epoch;
    try {
      const thread = await api.getThread(id);
      if (mine !== epoch) return;
      sidebar.upsert(thread);
      if (!picked) showModel(thread.model);
    } catch {
      // The picker keeps its guess; the next `thread` frame or reply corrects it.
    }
  }

  /** The user picked `next` in the header. */
  async function pickModel(next) {
    const before = model;
    if (next === before) return;
    showModel(next);
    picked = next;
    // A new chat: the thread is made with it, and its first `start` names it (send).
    if (!threadId) return;
    const mine = epoch;
    try {
      const thread = await api.setThreadModel(threadId, next);
      models.prefer(thread.model);
      if (mine !== epoch) return;
      sidebar.upsert(thread);
      if (picked === next) {
        picked = null;
        showModel(thread.model);
      }
    } catch (error) {
      if (mine !== epoch || picked !== next) return;
      picked = null;
      showModel(before);
      notices.failed(error, `Could not switch to ${models.label(next)}`, { retry: () => pickModel(next) });
    }
  }

  // ------------------------------------------------------------ the thread's client

  function connect(messages = []) {
    client?.dispose();
    client = null;
    sidebar.listen(!threadId);
    if (!threadId) {
      badge.hide();
      return;
    }
    // Refetches read whole pages: after a switch, the earlier messages are the new path's.
    const current = createChatClient({ threadId, messages, loadMessages: (id) => api.listMessages(id) });
    client = current;
    badge.show(current.connection() ?? 'connecting');
    current.on('change', ({ result }) => applyResult(result));
    current.on('connection', ({ state: connectionState }) => badge.show(connectionState));
    current.on('start', () => notices.announce('The assistant is replying.'));
    current.on('complete', ({ status }) => {
      notices.announce(status === 'cancelled' ? 'Reply stopped.' : 'Reply finished.');
      sidebar.bump(threadId);
      sidebar.refreshUsage();
    });
    current.on('thread', ({ thread }) => {
      sidebar.upsert(thread);
      // Another tab (or a reply on a model no longer offered) changed the open thread's model.
      if (thread.id === threadId && thread.model && !picked && thread.model !== model) showModel(thread.model);
    });
    current.on('feedback', ({ message }) => feedback.sync(message.id));
    // Another branch shown: "Load earlier" follows the new path from its newest page.
    current.on('path', ({ previous }) => {
      if (previous !== undefined) earlier.path(previous);
    });
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
      if (error.messageId || error.refused) {
        // The message shows it (its note): the bar would say it a second time.
        notices.announce(describeFailure(error));
        if (error.code === 'quota_exceeded') sidebar.refreshUsage();
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
    loading = false;
    feedback.reset();
    view.reset(NO_THREAD);
    earlier.reset();
    header.sync(threadId);
    sidebar.render();
    composer.switchThread(from, nextId, { carry });
    // A thread made for the first message keeps the model picked for it.
    if (!carry) {
      picked = null;
      showModel(nextId ? threadModel(nextId) : models.preferred());
    }
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
    badge.show('connecting');
    fetchThreadModel(nextId);
    try {
      const page = await api.listMessages(nextId);
      if (mine !== epoch) return;
      earlier.newest(page.previous);
      connect(page.results ?? []);
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
      earlier.newest(page.previous);
      client.merge(page.results ?? []);
    } catch {
      // The socket's own refetches cover the messages; paging just waits for the next try.
    }
  }

  // ------------------------------------------------------------ commands

  async function send(text, { attachments = [] } = {}) {
    const made = !threadId;
    if (!threadId) {
      creating = true;
      syncComposer();
      try {
        // Untitled on the server: the server titles a thread from its first message (and then
        // asks the model for a better title), announcing each with a `thread` frame. Until the
        // first one, show the same cut of the message here.
        const thread = await api.createThread({ model: picked });
        thread.title ||= titleFromText(text);
        sidebar.upsert(thread);
        if (picked) models.prefer(thread.model);
        resetThread(thread.id, { carry: true });
        if (thread.model) showModel(thread.model);
        history.pushState({}, '', `/t/${thread.id}/`);
        earlier.newest(null); // a new thread has nothing earlier
        connect();
      } finally {
        creating = false;
        syncComposer();
      }
    }
    if (!client) connect();
    // Queued by the connection until `ready` when the socket is not open yet. A model just
    // picked rides along: the server makes it the thread's before this reply, whichever of
    // this and the PATCH lands first.
    client.send(text, { model: picked, attachments });
    // The thread was made with it; a PATCH on its way clears it when it lands.
    if (made) picked = null;
    view.scrollToBottom();
    sidebar.bump(threadId);
  }

  // ------------------------------------------------------------ events

  ui.jump.addEventListener('click', () => view.scrollToBottom());

  return {
    id: () => threadId,
    busy,
    canSend: () => !creating && !loading && !busy(),
    model: () => models.get(model),
    send,
    stop() {
      if (client && busy()) client.stop();
    },
    editLast: actions.editLast,
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
    syncHeader: () => header.sync(threadId),
    closeMenu: header.closeMenu,
    start() {
      header.showProvider(config.provider);
      showModel(threadId ? threadModel(threadId) : models.preferred());
      if (threadId) fetchThreadModel(threadId);
      header.sync(threadId);
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
