// useThread over a fake WebSocket (the test plays the server), in jsdom with React and
// @testing-library/react. Run with `node --test clients/react/tests/`.
import { manualFrames } from './dom.mjs';

import assert from 'node:assert/strict';
import { afterEach, beforeEach, test } from 'node:test';

import { act, cleanup, renderHook } from '@testing-library/react';

import { useThread } from '../index.js';
import { FakeSocket } from './fake-socket.mjs';

const REPLY = 'a1a1a1a1-0000-4000-8000-000000000001';
const USER = {
  id: 'u1u1u1u1-0000-4000-8000-000000000001',
  role: 'user',
  content: 'hello',
  status: 'complete',
  client_id: 'c1c1c1c1-0000-4000-8000-000000000001',
  created_at: '2024-01-01T00:00:00Z',
};
const FAST = { backoffBaseMs: 1, backoffCapMs: 1, heartbeatMs: 60_000, deadAfterMs: 60_000 };

let frames;
beforeEach(() => {
  FakeSocket.reset();
  frames = manualFrames();
});
afterEach(() => {
  // A failed test's hook must not keep its socket's timers (and the run) alive.
  cleanup();
  frames.restore();
});

/** Render the hook on thread `t`, counting renders; `loads` records each history fetch. */
function mount({ history = [], threadId = 't', ...options } = {}) {
  const loads = [];
  let renders = 0;
  const hook = renderHook(({ id }) => {
    renders += 1;
    return useThread(id, {
      WebSocketImpl: FakeSocket,
      url: 'ws://chat.test/ws/threads/t/',
      watchVisibility: false,
      timing: FAST,
      loadMessages: async (id) => {
        loads.push(id);
        return typeof history === 'function' ? history() : history;
      },
      ...options,
    });
  }, { initialProps: { id: threadId } });
  return { ...hook, loads, renders: () => renders };
}

/** Let promises settle, then run the animation frame the hook asked for. */
async function nextFrame() {
  await act(async () => {
    await new Promise((resolve) => setTimeout(resolve, 0));
    frames.run();
  });
}

const server = (frame) => act(() => FakeSocket.latest().frame(frame));
const token = (seq, text) => ({ type: 'token', message_id: REPLY, seq, token: text });

test('the history loads, the socket opens, and a sent message shows at once then streams its reply', async () => {
  const hook = mount({ history: [USER] });
  assert.equal(hook.result.current.loading, true);
  assert.equal(hook.result.current.connection, 'connecting');
  act(() => FakeSocket.latest().accept());
  await nextFrame();
  assert.equal(hook.result.current.loading, false);
  assert.equal(hook.result.current.connection, 'open');
  assert.deepEqual(hook.result.current.messages.map((m) => m.content), ['hello']);

  let clientId;
  act(() => {
    clientId = hook.result.current.send('Tell me more');
  });
  await nextFrame();
  const [start] = FakeSocket.latest().commands('start');
  assert.equal(start.message, 'Tell me more');
  assert.equal(start.client_id, clientId);
  assert.equal(hook.result.current.messages.at(-1).local, true);
  assert.equal(hook.result.current.busy, true);

  await server({ type: 'message', message: { ...USER, id: 'u2', content: 'Tell me more', client_id: clientId, created_at: '2024-01-01T00:01:00Z' } });
  await server({ type: 'start', message_id: REPLY, seq: 0, model: 'm' });
  await server(token(1, 'More'));
  await server(token(2, ' text.'));
  await nextFrame();
  const view = hook.result.current;
  assert.equal(view.messages.length, 3);
  assert.equal(view.messages[1].id, 'u2', 'the saved message replaced the sent one');
  assert.equal(view.reply.id, REPLY);
  assert.equal(view.reply.content, 'More text.');

  await server({ type: 'complete', message_id: REPLY, seq: 3, status: 'complete', metrics: { totalTokens: 2, elapsedSeconds: 1, throughputTokensPerSec: 2, timeToFirstTokenMs: 10 } });
  await nextFrame();
  assert.equal(hook.result.current.reply, null);
  assert.equal(hook.result.current.busy, false);
  assert.equal(hook.result.current.messages.at(-1).metrics.totalTokens, 2);
  hook.unmount();
});

test('a burst of frames is one React update per animation frame', async () => {
  const hook = mount();
  act(() => FakeSocket.latest().accept({ message_id: REPLY, seq: 0, content: '' }));
  await nextFrame();
  const before = hook.renders();
  act(() => {
    for (let seq = 1; seq <= 200; seq += 1) FakeSocket.latest().frame(token(seq, 'x'));
  });
  assert.equal(hook.renders(), before, 'no render before the frame');
  assert.equal(frames.pending(), 1, 'one animation frame asked for');
  await nextFrame();
  assert.equal(hook.renders(), before + 1);
  assert.equal(hook.result.current.reply.content.length, 200);
  hook.unmount();
});

test('after a dropped socket the hook reconnects and resumes the reply from the server snapshot', async () => {
  let saved = [USER];
  const hook = mount({ history: () => saved });
  act(() => FakeSocket.latest().accept());
  await server({ type: 'start', message_id: REPLY, seq: 0, model: 'm' });
  await server(token(1, 'Once upon'));
  await nextFrame();
  assert.equal(hook.result.current.reply.content, 'Once upon');

  act(() => FakeSocket.latest().drop());
  await nextFrame();
  assert.equal(hook.result.current.connection, 'reconnecting');
  assert.equal(hook.result.current.reply.content, 'Once upon', 'what was shown stays shown');

  // Frames 2 and 3 were sent while the socket was down: the snapshot has them.
  await act(() => new Promise((resolve) => setTimeout(resolve, 20)));
  assert.equal(FakeSocket.all.length, 2, 'a new socket');
  saved = [USER, { id: REPLY, role: 'assistant', content: 'Once upon a', status: 'streaming', client_id: null, created_at: '2024-01-01T00:00:01Z' }];
  act(() => FakeSocket.latest().accept({ message_id: REPLY, seq: 3, content: 'Once upon a time' }));
  await server(token(4, ' there'));
  await nextFrame();
  assert.equal(hook.result.current.connection, 'open');
  assert.equal(hook.result.current.reply.content, 'Once upon a time there');
  assert.ok(hook.loads.length >= 2, 'the thread was fetched again after the reconnect');
  assert.equal(hook.result.current.reply.content, 'Once upon a time there', 'an older checkpoint never moves the reply back');
  hook.unmount();
});

test('a seq gap asks for a resync, and the new snapshot fills the gap', async () => {
  const hook = mount();
  act(() => FakeSocket.latest().accept());
  await server({ type: 'start', message_id: REPLY, seq: 0, model: 'm' });
  await server(token(1, 'a'));
  await server(token(2, 'b'));
  await server(token(4, 'd'));
  await server(token(5, 'e'));
  assert.equal(FakeSocket.latest().commands('resync').length, 1, 'one resync for the gap');
  await nextFrame();
  assert.equal(hook.result.current.reply.content, 'ab', 'nothing past the gap is shown');

  await server({ type: 'ready', thread_id: 't', active: { message_id: REPLY, seq: 5, content: 'abcde' } });
  await server(token(6, 'f'));
  await nextFrame();
  assert.equal(hook.result.current.reply.content, 'abcdef');
  hook.unmount();
});

test('stop, regenerate, edit and continue send the documented commands', async () => {
  const reply = { id: REPLY, role: 'assistant', content: 'Cut sho', status: 'complete', client_id: null, created_at: '2024-01-01T00:00:01Z', truncated: true };
  let saved = [USER, reply];
  const hook = mount({ history: () => saved });
  act(() => FakeSocket.latest().accept());
  await nextFrame();
  const socket = FakeSocket.latest();

  act(() => hook.result.current.stop());
  assert.deepEqual(socket.commands('stop'), [{ command: 'stop' }]);

  let sent;
  act(() => {
    sent = hook.result.current.continue(REPLY);
  });
  assert.equal(sent, true);
  const [continued] = socket.commands('continue');
  assert.deepEqual({ ...continued, client_id: undefined }, { command: 'continue', message_id: REPLY, client_id: undefined });
  assert.match(continued.client_id, /^[0-9a-f-]{36}$/, 'a continue carries a client_id, so a retried one is recognised');
  await nextFrame();
  assert.equal(hook.result.current.busy, true, 'a continue sent awaits its answer');
  // The continuation carries on the reply's seq: the same message grows (and is saved
  // as streaming again, for the refetch that the resync's `ready` asks for).
  saved = [USER, { ...reply, status: 'streaming', truncated: false }];
  await server({ type: 'ready', thread_id: 't', active: { message_id: REPLY, seq: 4, content: 'Cut short, then' } });
  await server({ ...token(5, ' finished.') });
  await server({ type: 'complete', message_id: REPLY, seq: 6, status: 'complete', metrics: null });
  await nextFrame();
  assert.equal(hook.result.current.messages.length, 2);
  assert.equal(hook.result.current.messages[1].content, 'Cut short, then finished.');
  assert.equal(hook.result.current.messages[1].truncated, undefined);

  act(() => {
    sent = hook.result.current.regenerate();
  });
  assert.equal(sent, true);
  assert.equal(socket.commands('regenerate').length, 1);
  await server({ type: 'error', code: 'busy', message: 'Busy.', recoverable: true });
  await nextFrame();
  assert.equal(hook.result.current.error.code, 'busy');
  assert.equal(hook.result.current.messages.length, 2, 'a refused regenerate shows the reply again');

  act(() => {
    sent = hook.result.current.edit(USER.id, 'hello again');
  });
  assert.equal(sent, true);
  const [edit] = socket.commands('edit');
  assert.equal(edit.message_id, USER.id);
  assert.equal(edit.message, 'hello again');
  await nextFrame();
  assert.equal(hook.result.current.error, null, 'a new command clears the last error');
  hook.unmount();
});

test('a continue the server refuses leaves the reply as it was', async () => {
  const reply = { id: REPLY, role: 'assistant', content: 'Cut sho', status: 'complete', client_id: null, created_at: '2024-01-01T00:00:01Z' };
  const hook = mount({ history: [USER, reply] });
  act(() => FakeSocket.latest().accept());
  await nextFrame();
  act(() => {
    hook.result.current.continue(REPLY);
  });
  await server({ type: 'error', code: 'bad_request', message: 'Unknown command.', recoverable: false });
  await nextFrame();
  const view = hook.result.current;
  assert.equal(view.busy, false);
  assert.equal(view.error.code, 'bad_request');
  assert.equal(view.messages[1].status, 'complete');
  assert.equal(view.messages[1].content, 'Cut sho');
  hook.unmount();
});

test('a thread that is not the user\'s stops the hook with fatal 4404', async () => {
  const hook = mount();
  act(() => FakeSocket.latest().drop(4404));
  await nextFrame();
  assert.equal(hook.result.current.fatal, 4404);
  assert.equal(hook.result.current.connection, 'offline');
  await act(() => new Promise((resolve) => setTimeout(resolve, 10)));
  assert.equal(FakeSocket.all.length, 1, 'no reconnect');
  hook.unmount();
});

test('switching threads closes the old socket and never shows the old thread', async () => {
  const hook = mount({ history: [USER] });
  act(() => FakeSocket.latest().accept());
  await nextFrame();
  const old = FakeSocket.latest();
  hook.rerender({ id: 'other' });
  assert.equal(hook.result.current.threadId, 'other');
  assert.deepEqual(hook.result.current.messages, []);
  assert.equal(old.closedWith, 1000);
  assert.equal(FakeSocket.all.length, 2);
  hook.unmount();
  assert.equal(FakeSocket.latest().closedWith, 1000, 'unmounting closes the socket');
});

test('without a thread there is no socket and send does nothing', () => {
  const hook = mount({ threadId: null });
  assert.equal(FakeSocket.all.length, 0);
  assert.equal(hook.result.current.connection, null);
  assert.equal(hook.result.current.send('hi'), null);
  hook.unmount();
});
