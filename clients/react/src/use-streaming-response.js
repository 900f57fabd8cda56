/**
 * useStreamingResponse: the seed's hook for apps without WebSockets. Each `send` posts the
 * message to `POST /api/stream/message` and reads the reply's frames as server-sent events;
 * the page's reducer (static/chat/protocol.js) applies them, so a stream resumed after a
 * break shows each frame once. React hears of it at most once per animation frame.
 */
import { useCallback, useEffect, useRef, useState } from 'react';

import { addLocalMessage, applyFrame, createThreadState, errorClass, makeStart } from './chat.js';
import { frameScheduler } from './schedule.js';
import { StreamError, streamMessage } from './stream.js';
import { threadView } from './view.js';

function clientError(error) {
  const code = error?.code ?? 'network';
  return {
    code,
    message: error?.message || 'Something went wrong.',
    ...errorClass({ code, status: error?.status, recoverable: error?.recoverable }),
    messageId: null,
    ...(typeof error?.status === 'number' ? { status: error.status } : {}),
  };
}

function lastReply(messages) {
  for (let i = messages.length - 1; i >= 0; i -= 1) {
    if (messages[i].role === 'assistant') return messages[i];
  }
  return null;
}

function timeZone() {
  return globalThis.Intl?.DateTimeFormat?.().resolvedOptions?.().timeZone;
}

/**
 * Stream replies over HTTP (see index.d.ts for the types).
 * @param {object} [options] threadId (the thread to send to first; default: a new one),
 *   baseUrl, clientSecret, fetch, retries, timing
 */
export function useStreamingResponse(options = {}) {
  const latest = useRef(options);
  latest.current = options;
  const session = useRef(null);
  if (session.current === null) {
    session.current = {
      state: createThreadState([]),
      threadId: options.threadId ?? null,
      controller: null,
      error: null,
      shown: null,
      changed: new Set(),
      scheduler: null,
    };
  }
  const [view, setView] = useState(() => snapshot(session.current));

  function snapshot(current) {
    current.shown = threadView(current.state, { previous: current.shown, changed: current.changed });
    current.changed.clear();
    const reply = lastReply(current.shown.messages);
    return Object.freeze({
      messages: current.shown.messages,
      reply,
      response: reply?.content ?? '',
      isStreaming: current.controller !== null,
      error: current.error,
      threadId: current.threadId,
    });
  }

  useEffect(() => {
    const current = session.current;
    current.scheduler = frameScheduler(() => setView(snapshot(current)));
    return () => {
      current.scheduler.dispose();
      current.scheduler = null;
      current.controller?.abort();
    };
  }, []);

  const send = useCallback(async (text, { threadId } = {}) => {
    const current = session.current;
    if (current.controller) return null;
    const controller = new AbortController();
    current.controller = controller;
    current.error = null;
    if (threadId) current.threadId = threadId;
    const update = (result) => {
      for (const id of result.changed) current.changed.add(id);
      for (const { to } of result.renamed) current.changed.add(to);
      current.scheduler?.request();
    };
    const { command, message } = makeStart(text);
    update(addLocalMessage(current.state, message));
    const zone = timeZone();
    const body = {
      message: text,
      client_id: command.client_id,
      ...(current.threadId ? { thread_id: current.threadId } : {}),
      ...(zone ? { time_zone: zone } : {}),
    };
    const { baseUrl, clientSecret, fetch, retries, timing } = latest.current;
    let replyId = null;
    try {
      await streamMessage({
        body,
        baseUrl,
        clientSecret,
        fetch,
        retries,
        timing,
        signal: controller.signal,
        onFrame: (frame) => {
          if (frame.type === 'start') replyId = String(frame.message_id);
          update(applyFrame(current.state, frame));
        },
        onThread: (id) => {
          current.threadId = id;
          current.scheduler?.request();
        },
      });
    } catch (error) {
      if (!controller.signal.aborted) {
        current.error = clientError(error);
        // A refusal is the server's error frame: the reducer marks the message refused.
        if (error instanceof StreamError && error.frame) update(applyFrame(current.state, error.frame));
        // Any other failure leaves the message unanswered as far as this page knows.
        const sent = current.state.byId.get(message.id);
        if (sent?.local && sent.status === 'pending') {
          sent.status = 'error';
          sent.error = { code: current.error.code, message: current.error.message };
          update({ changed: [sent.id], renamed: [] });
        }
      }
    } finally {
      current.controller = null;
      current.scheduler?.request();
    }
    const reply = replyId ? current.state.byId.get(replyId) : undefined;
    return reply ? Object.freeze({ ...reply }) : null;
  }, []);

  const abort = useCallback(() => {
    session.current.controller?.abort();
  }, []);

  return { ...view, send, abort };
}
