/**
 * The chat client: one thread's live conversation as an object with events. Any page can
 * import it; it needs no DOM (a WebSocket and fetch, both injectable).
 *
 * ```js
 * import { createChatClient } from '/static/chat/client.js';
 *
 * const chat = createChatClient({ threadId });
 * chat.on('token', ({ text }) => { output.textContent = text; });      // the whole reply so far
 * chat.on('complete', ({ message }) => console.log(message.metrics));
 * chat.on('error', ({ code, kind, recoverable }) => console.warn(kind, code));
 * chat.send('Hello!');  // queued until the socket is ready; safe to retry (client_id)
 * chat.send('Hi', { model: 'gpt-4o' });  // this reply on (and the thread's from now on)
 * chat.send('Sum this up', { attachments: [uploaded] });  // from POST /api/attachments/
 * await chat.rate(replyId, { rating: 'down', tags: ['Inaccurate'], comment: 'Wrong year' });
 * chat.stop();          // stops the reply for every tab, whichever process runs it
 * chat.dispose();       // closes the socket; no event fires afterwards
 * ```
 *
 * The client resumes a reply after a reload or reconnect from the server's `ready` snapshot,
 * asks for a resync on a `seq` gap, refetches the thread's messages when it may have missed
 * some, and re-checks the thread when the tab becomes visible again. Events:
 *
 * | event        | payload |
 * |--------------|---------|
 * | `connection` | `{state}`: `connecting`, `open`, `reconnecting` or `offline` |
 * | `ready`      | `{active}`: the server's snapshot of a reply in flight, or null |
 * | `message`    | `{message}`: a persisted user message (from this tab or another) |
 * | `start`      | `{message}`: a reply began |
 * | `token`      | `{message, token, text}`: a chunk and the reply's whole text so far |
 * | `complete`   | `{message, status, metrics}`: a reply ended (`complete` or `cancelled`) |
 * | `error`      | `{code, message, recoverable, kind, messageId}`: `kind` and `recoverable` from errorClass() |
 * | `thread`     | `{thread}`: a thread of the user's made or changed (this one or another) |
 * | `path`       | `{ids, previous?}`: the branch shown changed (a switch, here or in another tab); `ids` left the screen; `previous`: the cursor to earlier messages of the new path, when `loadMessages` gives pages |
 * | `thread_deleted` | `{threadId}`: a thread of the user's deleted (this one or another) |
 * | `feedback`   | `{message, feedback}`: a reply's rating changed (any tab, the API, ChatKit); null: removed |
 * | `change`     | `{result}`: the protocol's FrameResult, for views that render the state |
 * | `fatal`      | `{code}`: 4401 (log in again) or 4404 (no such thread); the client stopped |
 *
 * @typedef {import('./protocol.js').ThreadState} ThreadState
 * @typedef {import('./protocol.js').ChatMessage} ChatMessage
 * @typedef {import('./protocol.js').FrameResult} FrameResult
 * @typedef {import('./connection.js').ConnectionState} ConnectionState
 * @typedef {object} ChatClient
 * @property {(text: string, options?: string|{clientId?: string, model?: string|null,
 *   attachments?: import('./protocol.js').Attachment[]}) => string} send
 *   send a message (options: its client_id, or `{clientId, model, attachments}`: attachments
 *   are uploads from `POST /api/attachments/`); returns its client_id
 * @property {(messageId: string, given: {rating: 'up'|'down'|null, tags?: string[], comment?: string})
 *   => Promise<import('./protocol.js').Feedback|null>} rate  rate a finished reply (null: remove
 *   the rating); the state takes the saved feedback; throws api.js's Error when refused
 * @property {() => void} stop
 * @property {() => boolean} regenerate  replace the last finished reply; false if there is none
 * @property {(messageId: string, text: string) => boolean} edit  a new version of a user message
 *   shown, answered (a new branch: the old one is kept)
 * @property {(messageId: string) => Promise<void>} switchTo  show the branch through this
 *   message (one of a message's `siblings`): the thread's path runs to it, then on through its
 *   latest descendants; throws api.js's Error when refused (`busy` while a reply runs)
 * @property {(messageId: string) => boolean} continue  extend the last reply, cut by the token limit
 * @property {(messageId: string) => boolean} retry  send a refused message again (same client_id)
 * @property {(type: string, listener: (payload: object) => void) => () => void} on  returns an unsubscribe
 * @property {() => void} check    re-check the thread now (reconnect, or resync and refetch)
 * @property {(messages: object[]) => FrameResult} merge  merge persisted messages (older pages)
 * @property {ThreadState} state   the thread as the client knows it (read only)
 * @property {() => ConnectionState} connection
 * @property {() => boolean} busy  a reply runs or a sent command awaits its answer
 * @property {() => void} dispose
 */
import { listMessages, putFeedback, setActiveLeaf } from './api.js';
import { connectThread } from './connection.js';
import {
  addLocalMessage,
  applyFrame,
  beginContinue,
  beginEdit,
  beginRegenerate,
  createThreadState,
  errorClass,
  isBusy,
  lastShown,
  makeStart,
  mergeMessages,
  retryLocalMessage,
  setFeedback,
  setPath,
} from './protocol.js';

/**
 * The newest page of a thread's messages from the REST API (api.js listMessages): with the
 * session cookie, or with a client secret (`POST /api/chatkit/session`) as a Bearer token.
 * @param {string} threadId
 * @param {{baseUrl?: string, clientSecret?: string}} [auth]
 * @returns {Promise<object[]>} message objects, oldest first
 */
export async function fetchNewestMessages(threadId, { baseUrl = '', clientSecret } = {}) {
  return (await listMessages(threadId, { baseUrl, clientSecret })).results ?? [];
}

/**
 * Connect to one thread and follow it until dispose().
 * @param {object} options
 * @param {string} options.threadId
 * @param {object[]} [options.messages]  persisted messages already known (oldest first)
 * @param {string} [options.baseUrl]  the product's origin when this page is elsewhere
 *   (e.g. `https://chat.example.com`); default: this page's origin
 * @param {string} [options.clientSecret]  a client secret from `POST /api/chatkit/session`, for
 *   pages without the product's session cookie: sent as the `auth.<secret>` subprotocol and as
 *   a Bearer token
 * @param {(threadId: string) => Promise<object[]|{results: object[], previous: string|null}>}
 *   [options.loadMessages]  the refetch after a reconnect or a switch: the newest messages, or
 *   the newest page (api.js listMessages), whose cursor a `path` event then carries; defaults
 *   to fetchNewestMessages
 * @param {typeof WebSocket} [options.WebSocketImpl]
 * @param {boolean} [options.watchVisibility]  re-check when the tab becomes visible (default true)
 * @param {object} [options.timing]  heartbeat and backoff overrides, see connectThread
 * @param {string} [options.url]  the socket URL; defaults to this page's /ws/threads/<id>/
 * @returns {ChatClient}
 */
export function createChatClient({
  threadId,
  baseUrl = '',
  clientSecret,
  url = baseUrl ? `${baseUrl.replace(/^http/, 'ws').replace(/\/$/, '')}/ws/threads/${encodeURIComponent(threadId)}/` : undefined,
  messages = [],
  loadMessages = (id) => fetchNewestMessages(id, { baseUrl: baseUrl.replace(/\/$/, ''), clientSecret }),
  WebSocketImpl = globalThis.WebSocket,
  watchVisibility = true,
  timing,
}) {
  const state = createThreadState(messages);
  const listeners = new Map();
  let disposed = false;
  let refreshing = null;
  let refreshAgain = false;
  // The next refetch shows the path whole (a branch switch), not just its newest messages.
  let wholePath = false;

  function emit(type, payload) {
    if (disposed) return;
    for (const listener of [...(listeners.get(type) ?? [])]) {
      try {
        listener(payload);
      } catch (error) {
        // One broken listener must not stop the stream for the others.
        setTimeout(() => {
          throw error;
        });
      }
    }
  }

  function handle(result) {
    emit('change', { result });
    if (result.gap) conn.resync();
    if (result.stale) refresh();
  }

  // Frames missed while away (another tab's message, a reply that ended) are only in the
  // database: merge the newest page. One refetch at a time; a request during it runs after.
  async function refresh() {
    if (refreshing) {
      refreshAgain = true;
      return refreshing;
    }
    refreshing = (async () => {
      try {
        const whole = wholePath;
        wholePath = false;
        const page = await loadMessages(threadId);
        if (disposed) return;
        const paged = !Array.isArray(page);
        const result = setPath(state, paged ? page?.results ?? [] : page, { whole });
        handle(result);
        if (result.removed.length || whole) {
          emit('path', paged ? { ids: result.removed, previous: page?.previous ?? null } : { ids: result.removed });
        }
      } catch (error) {
        emit('error', { code: 'network', message: error?.message || 'Could not refresh the thread.', ...errorClass({ code: 'network' }), messageId: null });
      } finally {
        refreshing = null;
        if (refreshAgain && !disposed) {
          refreshAgain = false;
          refresh();
        }
      }
    })();
    return refreshing;
  }

  function onFrame(frame) {
    const result = applyFrame(state, frame);
    const message = frame.message_id != null ? state.byId.get(String(frame.message_id)) : undefined;
    if (!result.duplicate) {
      switch (frame.type) {
        case 'ready':
          emit('ready', { active: frame.active ?? null });
          break;
        case 'message': {
          const persisted = state.byId.get(String(frame.message?.id));
          if (persisted) emit('message', { message: persisted });
          break;
        }
        case 'start':
          if (message) emit('start', { message });
          break;
        case 'token':
          if (result.changed.length && message) emit('token', { message, token: frame.token ?? '', text: message.content });
          break;
        case 'complete':
          if (result.changed.length && message) emit('complete', { message, status: message.status, metrics: message.metrics });
          break;
        case 'error':
          if (frame.message_id == null || result.changed.length) {
            const code = frame.code ?? 'internal';
            emit('error', {
              code,
              message: frame.message ?? 'Something went wrong.',
              ...errorClass({ code, recoverable: frame.recoverable }),
              messageId: frame.message_id != null ? String(frame.message_id) : null,
              // The optimistic message this refused, which now shows it (null: none).
              refused: result.failed[0] ?? null,
            });
          }
          break;
        case 'thread':
          if (result.thread) {
            emit('thread', { thread: result.thread });
            if (switched(result.thread)) showPath();
          }
          break;
        case 'thread_deleted':
          if (result.deleted) emit('thread_deleted', { threadId: result.deleted });
          break;
        case 'feedback':
          if (result.changed.length && message) emit('feedback', { message, feedback: message.feedback });
          break;
        default:
          break;
      }
    }
    handle(result);
  }

  // A `thread` frame names the thread's active leaf: one that is not the last message shown,
  // while no reply runs here, is a branch switch (this tab's or another's). Frames of a new
  // reply name it only after its `start`, so a reply never reads as a switch.
  function switched(thread) {
    return String(thread.id) === String(threadId) && thread.active_leaf != null && !isBusy(state)
      && lastShown(state)?.id !== String(thread.active_leaf);
  }

  function showPath() {
    wholePath = true;
    return refresh();
  }

  const conn = connectThread({
    threadId,
    onFrame,
    onState: (connection) => emit('connection', { state: connection }),
    onFatal: (code) => emit('fatal', { code }),
    onRefused: () =>
      emit('error', {
        code: 'too_many_sockets',
        message: 'Too many open chat tabs or connections; retrying.',
        ...errorClass({ code: 'too_many_sockets' }),
        messageId: null,
      }),
    WebSocketImpl,
    timing,
    url,
    protocols: clientSecret ? ['chat', `auth.${clientSecret}`] : undefined,
  });

  // Commands that start a reply say the user's time zone, for the agent's clock tool.
  function withZone(command) {
    const zone = globalThis.Intl?.DateTimeFormat?.().resolvedOptions?.().timeZone;
    return zone ? { ...command, time_zone: zone } : command;
  }

  function onVisible() {
    if (globalThis.document?.visibilityState === 'visible') conn.check();
  }
  if (watchVisibility) globalThis.document?.addEventListener?.('visibilitychange', onVisible);

  return {
    send(text, options = {}) {
      const { clientId, model, attachments } = typeof options === 'string' ? { clientId: options } : options;
      const { command, message } = makeStart(text, clientId, { model, attachments });
      handle(addLocalMessage(state, message));
      conn.send(withZone(command));
      return command.client_id;
    },
    stop() {
      conn.send({ command: 'stop' });
    },
    regenerate() {
      const { command, result } = beginRegenerate(state);
      if (!command) return false;
      handle(result);
      conn.send(withZone(command));
      return true;
    },
    edit(messageId, text) {
      const { command, result } = beginEdit(state, messageId, text);
      if (!command) return false;
      handle(result);
      conn.send(withZone(command));
      return true;
    },
    async switchTo(messageId) {
      await setActiveLeaf(threadId, messageId, { baseUrl: baseUrl.replace(/\/$/, ''), clientSecret });
      if (!disposed) await showPath();
    },
    continue(messageId) {
      const { command, result } = beginContinue(state, messageId);
      if (!command) return false;
      handle(result);
      conn.send(command);
      return true;
    },
    retry(messageId) {
      const { command, result } = retryLocalMessage(state, messageId);
      if (!command) return false;
      handle(result);
      conn.send(withZone(command));
      return true;
    },
    on(type, listener) {
      if (!listeners.has(type)) listeners.set(type, new Set());
      listeners.get(type).add(listener);
      return () => listeners.get(type)?.delete(listener);
    },
    async rate(messageId, given) {
      const saved = await putFeedback(messageId, given, { baseUrl: baseUrl.replace(/\/$/, ''), clientSecret });
      if (disposed) return saved;
      const result = setFeedback(state, messageId, saved);
      emit('change', { result });
      const message = state.byId.get(String(messageId));
      if (result.changed.length && message) emit('feedback', { message, feedback: message.feedback });
      return message?.feedback ?? saved;
    },
    check() {
      conn.check();
    },
    merge(older) {
      const result = mergeMessages(state, older);
      emit('change', { result });
      return result;
    },
    state,
    connection: () => conn.state(),
    busy: () => isBusy(state),
    dispose() {
      if (disposed) return;
      disposed = true;
      listeners.clear();
      if (watchVisibility) globalThis.document?.removeEventListener?.('visibilitychange', onVisible);
      conn.dispose();
    },
  };
}
