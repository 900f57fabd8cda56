// useStreamingResponse over a fake fetch (the test plays the server), in jsdom with React and
// @testing-library/react. Run with `node --test clients/react/tests/`.
import { manualFrames } from './dom.mjs';

import assert from 'node:assert/strict';
import { afterEach, beforeEach, test } from 'node:test';

import { act, cleanup, renderHook } from '@testing-library/react';

import { useStreamingResponse } from '../index.js';
import { fakeFetch, sse, until } from './fake-fetch.mjs';

const REPLY = 'a1a1a1a1-0000-4000-8000-000000000001';
const FAST = { backoffBaseMs: 1, backoffCapMs: 1 };

let frames;
beforeEach(() => {
  frames = manualFrames();
});
afterEach(() => {
  cleanup();
  frames.restore();
});

function mount(options = {}) {
  const server = fakeFetch();
  let renders = 0;
  const hook = renderHook(() => {
    renders += 1;
    return useStreamingResponse({ fetch: server.fetch, timing: FAST, ...options });
  });
  return { ...hook, server, renders: () => renders };
}

async function nextFrame() {
  await act(async () => {
    await new Promise((resolve) => setTimeout(resolve, 0));
    frames.run();
  });
}

const userFrame = (clientId) => ({
  type: 'message',
  message: { id: 'u1', role: 'user', content: 'Hi', status: 'complete', client_id: clientId, created_at: '2024-01-01T00:00:00Z' },
});

test('a send streams its reply into response, one React update per animation frame', async () => {
  const hook = mount();
  let done;
  act(() => {
    done = hook.result.current.send('Hi');
  });
  await nextFrame();
  assert.equal(hook.result.current.isStreaming, true);
  assert.equal(hook.result.current.messages[0].local, true, 'the message shows before the server has it');
  await until(() => hook.server.latest()?.open);
  const request = hook.server.latest();
  assert.equal(request.body.message, 'Hi');
  assert.equal('thread_id' in request.body, false, 'the first send makes a thread');
  request.open('t7');
  request.write(sse(userFrame(request.body.client_id)));
  request.write(sse({ type: 'start', message_id: REPLY, seq: 0, model: 'm' }, 0));
  for (let seq = 1; seq <= 50; seq += 1) request.write(sse({ type: 'token', message_id: REPLY, seq, token: 'ab' }, seq));
  await until(() => frames.pending() > 0, 'a frame asked for');
  await act(() => new Promise((resolve) => setTimeout(resolve, 5)));
  const before = hook.renders();
  await nextFrame();
  assert.equal(hook.renders(), before + 1);
  assert.equal(hook.result.current.response, 'ab'.repeat(50));
  assert.equal(hook.result.current.threadId, 't7');

  request.write(sse({ type: 'complete', message_id: REPLY, seq: 51, status: 'complete', metrics: null }, 51));
  let reply;
  await act(async () => {
    reply = await done;
  });
  await nextFrame();
  assert.equal(reply.status, 'complete');
  assert.equal(hook.result.current.isStreaming, false);
  assert.equal(hook.result.current.reply.status, 'complete');
  assert.deepEqual(hook.result.current.messages.map((m) => m.role), ['user', 'assistant']);

  // The next send goes to the same thread.
  act(() => {
    hook.result.current.send('More');
  });
  await until(() => hook.server.requests.length === 2);
  assert.equal(hook.server.latest().body.thread_id, 't7');
});

test('a stream that breaks resumes, and a replayed frame is shown once', async () => {
  const hook = mount();
  let done;
  act(() => {
    done = hook.result.current.send('Hi');
  });
  await until(() => hook.server.latest()?.open);
  const first = hook.server.latest();
  first.open('t7');
  first.write(sse({ type: 'start', message_id: REPLY, seq: 0, model: 'm' }, 0));
  first.write(sse({ type: 'token', message_id: REPLY, seq: 1, token: 'Once' }, 1));
  await act(() => new Promise((resolve) => setTimeout(resolve, 5)));
  first.break();
  await until(() => hook.server.requests.length === 2, 'the resumed request');
  const again = hook.server.latest();
  assert.equal(again.body.client_id, first.body.client_id);
  assert.equal(again.body.thread_id, 't7');
  // The server sends what the reply said so far, then the rest.
  again.open('t7');
  again.write(sse({ type: 'start', message_id: REPLY, seq: 0, model: 'm' }, 0));
  again.write(sse({ type: 'token', message_id: REPLY, seq: 1, token: 'Once' }, 1));
  again.write(sse({ type: 'token', message_id: REPLY, seq: 2, token: ' upon' }, 2));
  again.write(sse({ type: 'complete', message_id: REPLY, seq: 3, status: 'complete', metrics: null }, 3));
  await act(async () => {
    await done;
  });
  await nextFrame();
  assert.equal(hook.result.current.response, 'Once upon');
  assert.equal(hook.result.current.error, null);
});

test('a refused send shows the server\'s error and marks the message refused', async () => {
  const hook = mount({ threadId: 't3' });
  let done;
  act(() => {
    done = hook.result.current.send('Hi');
  });
  await until(() => hook.server.latest()?.refuse);
  assert.equal(hook.server.latest().body.thread_id, 't3');
  hook.server.latest().refuse(409, { type: 'error', ts: 1, code: 'busy', message: 'A reply is already running.', recoverable: true });
  let reply;
  await act(async () => {
    reply = await done;
  });
  await nextFrame();
  const view = hook.result.current;
  assert.equal(reply, null);
  assert.equal(view.isStreaming, false);
  assert.equal(view.error.code, 'busy');
  assert.equal(view.error.status, 409);
  assert.equal(view.error.kind, 'request');
  assert.equal(view.messages[0].status, 'error');
});

test('abort stops reading without an error; a second send while streaming is refused here', async () => {
  const hook = mount({ threadId: 't3' });
  let done;
  act(() => {
    done = hook.result.current.send('Hi');
  });
  let second;
  await act(async () => {
    second = await hook.result.current.send('Again');
  });
  assert.equal(second, null);
  await until(() => hook.server.latest()?.open);
  hook.server.latest().open('t3');
  act(() => hook.result.current.abort());
  await act(async () => {
    await done;
  });
  await nextFrame();
  assert.equal(hook.result.current.isStreaming, false);
  assert.equal(hook.result.current.error, null);
  assert.equal(hook.server.requests.length, 1);
});
