/**
 * useThread: one thread's live conversation over its WebSocket, as React state. The chat
 * page's own client (static/chat/client.js) does the work: it queues commands until the
 * socket is ready, reconnects with backoff, resumes a reply from `ready`, resyncs on a `seq`
 * gap and refetches what it may have missed. The hook hands React at most one update per
 * animation frame.
 */
import { useCallback, useEffect, useMemo, useRef, useState } from 'react';

import { createChatClient, errorClass, fetchNewestMessages } from './chat.js';
import { frameScheduler } from './schedule.js';
import { EMPTY_VIEW, threadView } from './view.js';

function blank(threadId, loading) {
  return Object.freeze({
    threadId: threadId ?? null,
    ...EMPTY_VIEW,
    connection: threadId ? 'connecting' : null,
    loading: Boolean(threadId) && loading,
    error: null,
    fatal: null,
  });
}

function loadFailure(error) {
  const status = typeof error?.status === 'number' ? error.status : undefined;
  return {
    code: status === undefined ? 'network' : 'load_failed',
    message: error?.message || 'Could not load the thread.',
    ...errorClass({ status, recoverable: error?.recoverable }),
    messageId: null,
    ...(status === undefined ? {} : { status }),
  };
}

/**
 * Follow one thread (see index.d.ts for the types).
 * @param {string|null|undefined} threadId  the thread to follow; none: an empty view
 * @param {object} [options]  baseUrl and clientSecret (a change reconnects); messages,
 *   loadMessages, WebSocketImpl, timing, url and watchVisibility (read when connecting)
 */
export function useThread(threadId, options = {}) {
  const { baseUrl = '', clientSecret } = options;
  const latest = useRef(options);
  latest.current = options;
  // The connection of the current thread: its client, what the view shows beside the
  // messages, and the scheduler that hands the view to React.
  const session = useRef(null);
  const [view, setView] = useState(() => blank(threadId, !options.messages));

  useEffect(() => {
    if (!threadId) return undefined;
    const {
      messages,
      loadMessages = (id) => fetchNewestMessages(id, { baseUrl, clientSecret }),
      WebSocketImpl,
      timing,
      url,
      watchVisibility,
    } = latest.current;
    const chat = createChatClient({
      threadId, baseUrl, clientSecret, url, messages, loadMessages, WebSocketImpl, timing, watchVisibility,
    });
    const meta = { connection: chat.connection() ?? 'connecting', loading: !messages, error: null, fatal: null };
    const changed = new Set();
    let shown = null;
    let live = true;
    const scheduler = frameScheduler(() => {
      shown = threadView(chat.state, { previous: shown, changed });
      changed.clear();
      setView(Object.freeze({ threadId, ...shown, ...meta }));
    });
    const current = { chat, meta, update: () => scheduler.request() };
    session.current = current;

    chat.on('change', ({ result }) => {
      for (const id of result.changed) changed.add(id);
      for (const { to } of result.renamed) changed.add(to);
      scheduler.request();
    });
    chat.on('connection', ({ state }) => {
      meta.connection = state;
      scheduler.request();
    });
    chat.on('start', () => {
      meta.error = null;
      scheduler.request();
    });
    chat.on('error', (error) => {
      meta.error = error;
      scheduler.request();
    });
    chat.on('fatal', ({ code }) => {
      meta.fatal = code;
      scheduler.request();
    });
    // The history; the socket's `ready` and frames merge with it in any order.
    if (!messages) {
      Promise.resolve()
        .then(() => loadMessages(threadId))
        .then(
          (page) => live && chat.merge(page),
          (error) => {
            if (live) meta.error = loadFailure(error);
          },
        )
        .finally(() => {
          if (!live) return;
          meta.loading = false;
          scheduler.request();
        });
    }
    return () => {
      live = false;
      scheduler.dispose();
      chat.dispose();
      if (session.current === current) session.current = null;
    };
  }, [threadId, baseUrl, clientSecret]);

  // A command clears the last error: what shows next is its own answer.
  const act = useCallback((command) => {
    const current = session.current;
    if (!current) return null;
    current.meta.error = null;
    const answer = command(current.chat);
    current.update();
    return answer;
  }, []);
  const send = useCallback((text) => act((chat) => chat.send(text)), [act]);
  const stop = useCallback(() => {
    session.current?.chat.stop();
  }, []);
  const regenerate = useCallback(() => act((chat) => chat.regenerate()) ?? false, [act]);
  const edit = useCallback((messageId, text) => act((chat) => chat.edit(messageId, text)) ?? false, [act]);
  const continueReply = useCallback((messageId) => act((chat) => chat.continue(messageId)) ?? false, [act]);
  const retry = useCallback((messageId) => act((chat) => chat.retry(messageId)) ?? false, [act]);
  const reconnect = useCallback(() => {
    session.current?.chat.check();
  }, []);

  // Until the new thread's first update, show it empty, never the previous thread.
  const empty = useMemo(() => blank(threadId, !latest.current.messages), [threadId]);
  const shown = view.threadId === (threadId ?? null) ? view : empty;
  return {
    ...shown,
    send,
    stop,
    regenerate,
    edit,
    continue: continueReply,
    retry,
    reconnect,
  };
}
