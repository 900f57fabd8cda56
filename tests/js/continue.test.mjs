// A reply cut by the token limit (`truncated`) and `continue` in static/chat/protocol.js.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { applyFrame, beginContinue, createThreadState, isBusy } from '../../static/chat/protocol.js';

const REPLY = 'a1a1a1a1-0000-4000-8000-000000000001';
const USER = {
  id: 'u1u1u1u1-0000-4000-8000-000000000001',
  role: 'user',
  content: 'tell me',
  status: 'complete',
  client_id: null,
  created_at: '2024-01-01T00:00:00Z',
};
const token = (seq, text) => ({ type: 'token', message_id: REPLY, seq, token: text, ts: 1 });
const metrics = { totalTokens: 2, elapsedSeconds: 1, throughputTokensPerSec: 2, timeToFirstTokenMs: 1 };
const complete = (seq, extra = {}) => ({ type: 'complete', message_id: REPLY, seq, status: 'complete', metrics, ts: 1, ...extra });

// A reply followed live to its end, which the token limit cut (terminal frame seq 3).
function cutReply() {
  const state = createThreadState([USER]);
  applyFrame(state, { type: 'ready', thread_id: 't', active: null });
  applyFrame(state, { type: 'start', message_id: REPLY, seq: 0, model: 'm', ts: 1 });
  applyFrame(state, token(1, 'Once '));
  applyFrame(state, token(2, 'upon'));
  applyFrame(state, complete(3, { truncated: true }));
  return state;
}

test('a complete frame with truncated marks the reply truncated', () => {
  const state = cutReply();
  const reply = state.byId.get(REPLY);
  assert.equal(reply.status, 'complete');
  assert.equal(reply.truncated, true);
});

test('continue sends the command, and the frames after the old end grow the same reply', () => {
  const state = cutReply();
  const { command } = beginContinue(state, REPLY, 'c1');
  assert.deepEqual(command, { command: 'continue', message_id: REPLY, client_id: 'c1' });
  assert.equal(isBusy(state), true);
  const r = applyFrame(state, token(4, ' a time'));
  assert.deepEqual(r.changed, [REPLY]);
  const reply = state.byId.get(REPLY);
  assert.equal(reply.status, 'streaming');
  assert.equal(reply.truncated, undefined);
  assert.equal(reply.content, 'Once upon a time');
  applyFrame(state, complete(5));
  assert.equal(reply.status, 'complete');
  assert.equal(reply.truncated, undefined);
  assert.equal(reply.content, 'Once upon a time');
  assert.equal(state.messages.length, 2);
});

test('continue is refused for a reply that is not the last, or while one runs', () => {
  const state = cutReply();
  assert.equal(beginContinue(state, USER.id).command, null);
  assert.equal(beginContinue(state, 'nope').command, null);
  beginContinue(state, REPLY);
  assert.equal(beginContinue(state, REPLY).command, null);
});

test("another tab's continuation of a truncated reply is followed; a finished reply takes no more", () => {
  const state = cutReply();
  applyFrame(state, token(4, ' a'));
  assert.equal(state.byId.get(REPLY).content, 'Once upon a');
  applyFrame(state, complete(5));

  const whole = createThreadState([USER]);
  applyFrame(whole, { type: 'ready', thread_id: 't', active: null });
  applyFrame(whole, { type: 'start', message_id: REPLY, seq: 0, model: 'm', ts: 1 });
  applyFrame(whole, token(1, 'Done.'));
  applyFrame(whole, complete(2));
  const late = applyFrame(whole, token(3, ' more'));
  assert.equal(late.duplicate, true);
  assert.equal(whole.byId.get(REPLY).content, 'Done.');
});

test('a ready snapshot of a continuation shows its whole text', () => {
  const state = cutReply();
  const snapshot = { message_id: REPLY, seq: 6, content: 'Once upon a time there' };
  applyFrame(state, { type: 'ready', thread_id: 't', active: snapshot });
  const reply = state.byId.get(REPLY);
  assert.equal(reply.status, 'streaming');
  assert.equal(reply.content, 'Once upon a time there');
  applyFrame(state, token(7, ' was'));
  assert.equal(reply.content, 'Once upon a time there was');
});
