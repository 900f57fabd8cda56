// The hooks against a live server (run by tests/test_react_client.py, which starts daphne with
// the stub provider): useThread sends, the reply streams, a reload resumes it mid-reply, stop
// stops it, and a reload after shows what was saved; then useStreamingResponse streams a
// reply over HTTP. The hooks run in jsdom with React; jsdom's WebSocket is the socket.
//
//   CHAT_URL=http://127.0.0.1:PORT CHAT_SECRET=cs_... CHAT_THREAD=<uuid> \
//   CHAT_LONG=<prompt> CHAT_SHORT=<prompt> CHAT_SHORT_REPLY=<text> node clients/react/tests/live-thread.mjs
//
// Prints what it saw as JSON on its last line; exits 1 with the reason when a step fails.
import { dom } from './dom.mjs';

import { act, renderHook, waitFor } from '@testing-library/react';

import { useStreamingResponse, useThread } from '../index.js';

const env = (name) => {
  if (!process.env[name]) throw new Error(`${name} is not set`);
  return process.env[name];
};
const threadId = env('CHAT_THREAD');
const options = {
  baseUrl: env('CHAT_URL'),
  clientSecret: env('CHAT_SECRET'),
  WebSocketImpl: dom.window.WebSocket,
  watchVisibility: false,
};
const patience = { timeout: 15_000, interval: 10 };

/** Wait until `check()` holds on the hook's latest result, naming the step if it never does. */
async function step(name, hook, check) {
  try {
    await waitFor(() => {
      if (!check(hook.result.current)) throw new Error('not yet');
    }, patience);
  } catch {
    const { connection, loading, error, messages } = hook.result.current;
    const last = messages.at(-1);
    throw new Error(`${name}: never happened (connection ${connection}, loading ${loading}, error ${JSON.stringify(error)}, last message ${JSON.stringify(last && { role: last.role, status: last.status, chars: last.content.length })})`);
  }
  return hook.result.current;
}

const open = () => renderHook(() => useThread(threadId, options));
const ready = (view) => view.connection === 'open' && !view.loading;

async function main() {
  const seen = {};

  const first = open();
  await step('the first socket opens', first, ready);
  act(() => {
    first.result.current.send(env('CHAT_LONG'));
  });
  const streaming = await step('the reply streams', first, (v) => (v.reply?.content.length ?? 0) >= 40);
  seen.replyId = streaming.reply.id;
  seen.beforeReload = streaming.reply.content;
  seen.userMessageSaved = streaming.messages.some((m) => m.role === 'user' && !m.local);

  // A reload: the page goes away (its socket with it) and a new one follows the thread.
  first.unmount();
  const second = open();
  const resumed = await step('the reply resumes after the reload', second, (v) => (
    ready(v)
    && v.reply?.id === seen.replyId
    && v.reply.content.startsWith(seen.beforeReload)
    && v.reply.content.length > seen.beforeReload.length
  ));
  seen.afterReload = resumed.reply.content;
  seen.historyAfterReload = resumed.messages.map((m) => m.role);

  act(() => second.result.current.stop());
  const stopped = await step('stop ends the reply', second, (v) => v.messages.at(-1)?.status === 'cancelled' && !v.busy);
  seen.stopped = stopped.messages.at(-1).content;
  second.unmount();

  const third = open();
  const reloaded = await step('a reload shows the stopped reply', third, (v) => ready(v) && v.messages.at(-1)?.id === seen.replyId);
  const saved = reloaded.messages.at(-1);
  seen.savedStatus = saved.status;
  seen.saved = saved.content;
  third.unmount();

  const http = renderHook(() => useStreamingResponse({ threadId, baseUrl: options.baseUrl, clientSecret: options.clientSecret }));
  let reply;
  await act(async () => {
    reply = await http.result.current.send(env('CHAT_SHORT'));
  });
  const streamed = await step('a reply streams over HTTP', http, (v) => !v.isStreaming && v.reply?.status === 'complete');
  seen.streamed = streamed.response;
  seen.streamedResolved = reply?.content;
  seen.streamedThread = streamed.threadId;
  http.unmount();
  return seen;
}

try {
  console.log(JSON.stringify(await main()));
  process.exit(0);
} catch (error) {
  console.error(error?.stack ?? String(error));
  process.exit(1);
}
