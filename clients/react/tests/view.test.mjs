// The hooks' reducer: the immutable view React gets of the page's mutable thread state, and
// the one-update-per-frame scheduler. Run with `node --test clients/react/tests/`.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { applyFrame, createThreadState, mergeMessages } from '../../../static/chat/protocol.js';
import { frameScheduler } from '../src/schedule.js';
import { threadView } from '../src/view.js';
import { manualFrames } from './dom.mjs';

const REPLY = 'a1a1a1a1-0000-4000-8000-000000000001';
const USER = {
  id: 'u1u1u1u1-0000-4000-8000-000000000001',
  role: 'user',
  content: 'hello',
  status: 'complete',
  client_id: 'c1c1c1c1-0000-4000-8000-000000000001',
  created_at: '2024-01-01T00:00:00Z',
};

function follow(state, view, frame) {
  const result = applyFrame(state, frame);
  return threadView(state, { previous: view, changed: new Set(result.changed) });
}

test('a streaming reply is the view reply and grows a new object per change', () => {
  const state = createThreadState([USER]);
  let view = threadView(state);
  view = follow(state, view, { type: 'ready', thread_id: 't', active: null });
  view = follow(state, view, { type: 'start', message_id: REPLY, seq: 0, model: 'm' });
  const started = view.reply;
  assert.equal(started.id, REPLY);
  view = follow(state, view, { type: 'token', message_id: REPLY, seq: 1, token: 'Hi' });
  assert.equal(view.reply.content, 'Hi');
  assert.notEqual(view.reply, started, 'a changed message is a new object');
  assert.equal(started.content, '', 'an earlier view never changes under React');
  assert.equal(view.busy, true);
  view = follow(state, view, { type: 'complete', message_id: REPLY, seq: 2, status: 'complete', metrics: null });
  assert.equal(view.reply, null);
  assert.equal(view.busy, false);
  assert.equal(view.messages.at(-1).status, 'complete');
});

test('messages that did not change keep their identity, and an unchanged view is the same view', () => {
  const state = createThreadState([USER]);
  const first = threadView(state);
  applyFrame(state, { type: 'start', message_id: REPLY, seq: 0, model: 'm' });
  const second = threadView(state, { previous: first, changed: new Set([REPLY]) });
  assert.equal(second.messages[0], first.messages[0]);
  assert.equal(threadView(state, { previous: second }), second);
});

test('the view is frozen, tool steps included', () => {
  const state = createThreadState([USER]);
  applyFrame(state, { type: 'ready', thread_id: 't', active: { message_id: REPLY, seq: 1, content: 'x', steps: [{ call_id: 'c', name: 'clock', arguments: '{}', status: 'running', offset: 0 }] } });
  const view = threadView(state);
  assert.ok(Object.isFrozen(view) && Object.isFrozen(view.messages) && Object.isFrozen(view.reply));
  assert.ok(Object.isFrozen(view.reply.steps[0]));
  applyFrame(state, { type: 'tool', message_id: REPLY, seq: 2, call_id: 'c', name: 'clock', arguments: '{}', status: 'done', output: '12:00', offset: 0 });
  assert.equal(view.reply.steps[0].status, 'running', 'the step replaced in the state is not the view\'s');
});

test('what a regenerate replaces is hidden from the view until the server removes it', async () => {
  const { beginRegenerate } = await import('../../../static/chat/protocol.js');
  const state = createThreadState([USER, { ...USER, id: REPLY, role: 'assistant', content: 'old', client_id: null }]);
  const before = threadView(state);
  const { result } = beginRegenerate(state, 'c2c2c2c2-0000-4000-8000-000000000002');
  const after = threadView(state, { previous: before, changed: new Set(result.changed) });
  assert.deepEqual(after.messages.map((m) => m.id), [USER.id]);
  assert.equal(after.busy, true);
  assert.equal('superseded' in before.messages[1], false);
});

test('merged history takes its place by time', () => {
  const state = createThreadState([]);
  applyFrame(state, { type: 'ready', thread_id: 't', active: { message_id: REPLY, seq: 2, content: 'part' } });
  const result = mergeMessages(state, [USER]);
  const view = threadView(state, { changed: new Set(result.changed) });
  assert.deepEqual(view.messages.map((m) => m.id), [USER.id, REPLY]);
});

test('the scheduler flushes once per animation frame however often it is asked', () => {
  const frames = manualFrames();
  try {
    let flushes = 0;
    const scheduler = frameScheduler(() => { flushes += 1; });
    for (let i = 0; i < 100; i += 1) scheduler.request();
    assert.equal(frames.pending(), 1);
    frames.run();
    assert.equal(flushes, 1);
    scheduler.request();
    scheduler.dispose();
    frames.run();
    assert.equal(flushes, 1, 'nothing flushes after dispose');
  } finally {
    frames.restore();
  }
});
