// Tests for static/chat/protocol.js: run with `node --test tests/js/`.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  addLocalMessage,
  applyFrame,
  beginEdit,
  branchOf,
  canEdit,
  setPath,
  beginRegenerate,
  createThreadState,
  editable,
  errorClass,
  isBusy,
  makeStart,
  mergeMessages,
  regenerable,
  retryLocalMessage,
} from '../../static/chat/protocol.js';

const REPLY = 'a1a1a1a1-0000-4000-8000-000000000001';

function userMessage(overrides = {}) {
  return {
    id: 'u1u1u1u1-0000-4000-8000-000000000001',
    role: 'user',
    content: 'hello',
    status: 'complete',
    client_id: 'c1c1c1c1-0000-4000-8000-000000000001',
    created_at: '2024-01-01T00:00:00Z',
    model: null,
    metrics: null,
    error: null,
    ...overrides,
  };
}

const token = (seq, text) => ({ type: 'token', message_id: REPLY, seq, token: text, ts: 1 });
const content = (state, id = REPLY) => state.byId.get(id).content;

test('a ready snapshot sets the reply text and later frames continue it', () => {
  const state = createThreadState([userMessage()]);
  const r = applyFrame(state, { type: 'ready', thread_id: 't', active: { message_id: REPLY, seq: 3, content: 'Hel' } });
  assert.deepEqual(r.changed, [REPLY]);
  assert.equal(content(state), 'Hel');
  assert.equal(state.byId.get(REPLY).status, 'streaming');

  const t = applyFrame(state, token(4, 'lo'));
  assert.deepEqual(t.changed, [REPLY]);
  assert.equal(content(state), 'Hello');
  assert.equal(state.messages.at(-1).id, REPLY);
});

test('frames at or below the snapshot seq are ignored as duplicates', () => {
  const state = createThreadState([]);
  applyFrame(state, { type: 'ready', thread_id: 't', active: { message_id: REPLY, seq: 2, content: 'ab' } });
  for (const seq of [1, 2]) {
    const r = applyFrame(state, token(seq, 'x'));
    assert.equal(r.duplicate, true);
    assert.equal(r.gap, false);
    assert.deepEqual(r.changed, []);
  }
  assert.equal(applyFrame(state, { type: 'start', message_id: REPLY, seq: 0, model: 'm' }).duplicate, true);
  assert.equal(content(state), 'ab');
});

test('a start frame creates a streaming reply that tokens extend in order', () => {
  const state = createThreadState([userMessage()]);
  applyFrame(state, { type: 'ready', thread_id: 't', active: null });
  applyFrame(state, { type: 'start', message_id: REPLY, seq: 0, model: 'smol', ts: 1 });
  assert.equal(isBusy(state), true);
  applyFrame(state, token(1, 'Hi'));
  const dup = applyFrame(state, token(1, 'Hi'));
  applyFrame(state, token(2, ' there'));
  assert.equal(dup.duplicate, true);
  const reply = state.byId.get(REPLY);
  assert.equal(reply.content, 'Hi there');
  assert.equal(reply.model, 'smol');
  assert.equal(reply.role, 'assistant');
});

test('a seq gap is reported once and leaves the text untouched until resync', () => {
  const state = createThreadState([]);
  applyFrame(state, { type: 'ready', thread_id: 't', active: null });
  applyFrame(state, { type: 'start', message_id: REPLY, seq: 0, model: 'm' });
  applyFrame(state, token(1, 'a'));
  const first = applyFrame(state, token(3, 'c'));
  const second = applyFrame(state, token(4, 'd'));
  assert.equal(first.gap, true);
  assert.equal(second.gap, false, 'one resync is enough for a run of gapped frames');
  assert.equal(content(state), 'a');

  const ready = applyFrame(state, { type: 'ready', thread_id: 't', active: { message_id: REPLY, seq: 4, content: 'abcd' } });
  assert.equal(ready.stale, true, 'a second ready asks for a refetch of missed messages');
  applyFrame(state, token(5, 'e'));
  assert.equal(content(state), 'abcde');
  assert.equal(applyFrame(state, token(7, 'g')).gap, true, 'a new gap after resync is reported again');
});

test('a token for an unknown reply is a gap', () => {
  const state = createThreadState([]);
  applyFrame(state, { type: 'ready', thread_id: 't', active: null });
  assert.equal(applyFrame(state, token(5, 'x')).gap, true);
});

test('the persisted message frame replaces the optimistic message in place', () => {
  const state = createThreadState([userMessage()]);
  const { command, message } = makeStart('second question');
  assert.equal(command.command, 'start');
  assert.equal(command.message, 'second question');
  assert.match(command.client_id, /^[0-9a-f-]{36}$/);
  assert.equal(message.id, command.client_id);
  assert.equal(message.status, 'pending');

  addLocalMessage(state, message);
  assert.equal(isBusy(state), true);
  const persisted = userMessage({ id: 'u2', content: 'second question', client_id: command.client_id, created_at: '2024-01-01T00:01:00Z' });
  const r = applyFrame(state, { type: 'message', message: persisted, ts: 2 });

  assert.deepEqual(r.renamed, [{ from: command.client_id, to: 'u2' }]);
  assert.deepEqual(r.changed, ['u2']);
  assert.equal(state.messages.length, 2);
  assert.equal(state.messages[1].id, 'u2');
  assert.equal(state.messages[1].local, undefined);
  assert.equal(state.byId.has(command.client_id), false);
  assert.equal(isBusy(state), false);

  applyFrame(state, { type: 'message', message: persisted, ts: 3 });
  assert.equal(state.messages.length, 2, 'the same message twice is not duplicated');
});

test('a message from another tab is appended', () => {
  const state = createThreadState([userMessage()]);
  applyFrame(state, { type: 'message', message: userMessage({ id: 'u9', client_id: 'other', created_at: '2024-01-01T00:05:00Z' }) });
  assert.deepEqual(state.messages.map((m) => m.id), [userMessage().id, 'u9']);
});

test('complete ends the reply with its status and metrics', () => {
  const state = createThreadState([]);
  applyFrame(state, { type: 'ready', thread_id: 't', active: null });
  applyFrame(state, { type: 'start', message_id: REPLY, seq: 0, model: 'm' });
  applyFrame(state, token(1, 'done'));
  const metrics = { totalTokens: 3, elapsedSeconds: 0.5, throughputTokensPerSec: 6, timeToFirstTokenMs: 120 };
  const r = applyFrame(state, { type: 'complete', message_id: REPLY, seq: 2, status: 'complete', metrics });
  assert.deepEqual(r.changed, [REPLY]);
  const reply = state.byId.get(REPLY);
  assert.equal(reply.status, 'complete');
  assert.deepEqual(reply.metrics, metrics);
  assert.equal(isBusy(state), false);
  assert.equal(applyFrame(state, token(3, 'late')).duplicate, true, 'an ended reply takes no more text');
  assert.equal(reply.content, 'done');
});

test('a stopped reply completes as cancelled and keeps its text', () => {
  const state = createThreadState([]);
  applyFrame(state, { type: 'ready', thread_id: 't', active: { message_id: REPLY, seq: 1, content: 'part' } });
  applyFrame(state, { type: 'complete', message_id: REPLY, seq: 2, status: 'cancelled', metrics: null });
  assert.equal(state.byId.get(REPLY).status, 'cancelled');
  assert.equal(content(state), 'part');
});

test('complete after a gap waits for the resync', () => {
  const state = createThreadState([]);
  applyFrame(state, { type: 'ready', thread_id: 't', active: { message_id: REPLY, seq: 1, content: 'a' } });
  const r = applyFrame(state, { type: 'complete', message_id: REPLY, seq: 5, status: 'complete', metrics: null });
  assert.equal(r.gap, true);
  assert.equal(state.byId.get(REPLY).status, 'streaming');
});

test('an error with message_id ends that reply with the error and keeps its text', () => {
  const state = createThreadState([]);
  applyFrame(state, { type: 'ready', thread_id: 't', active: { message_id: REPLY, seq: 1, content: 'partial' } });
  const r = applyFrame(state, {
    type: 'error', code: 'provider_error', message: 'upstream failed', recoverable: true, message_id: REPLY, seq: 2,
  });
  assert.equal(r.notice, null);
  const reply = state.byId.get(REPLY);
  assert.equal(reply.status, 'error');
  assert.deepEqual(reply.error, { code: 'provider_error', message: 'upstream failed', recoverable: true });
  assert.equal(reply.content, 'partial');
  assert.equal(isBusy(state), false);
});

test('an interrupted reply keeps the interrupted status the database gives it', () => {
  const state = createThreadState([]);
  applyFrame(state, { type: 'ready', thread_id: 't', active: { message_id: REPLY, seq: 1, content: 'x' } });
  applyFrame(state, { type: 'error', code: 'interrupted', message: 'worker died', recoverable: true, message_id: REPLY });
  assert.equal(state.byId.get(REPLY).status, 'interrupted');
});

test('an error without message_id is a notice and fails the pending optimistic message', () => {
  const state = createThreadState([]);
  const { message } = makeStart('too long');
  addLocalMessage(state, message);
  const r = applyFrame(state, { type: 'error', code: 'busy', message: 'A reply is already running.', recoverable: true });
  assert.deepEqual(r.notice, { code: 'busy', message: 'A reply is already running.', recoverable: true });
  assert.deepEqual(r.failed, [message.id]);
  assert.equal(state.byId.get(message.id).status, 'error');
  assert.equal(state.byId.get(message.id).content, 'too long', 'what the user typed is kept');
  assert.equal(isBusy(state), false);
});

test('heartbeat and unknown frames change nothing', () => {
  const state = createThreadState([userMessage()]);
  for (const frame of [{ type: 'heartbeat', ts: 1 }, { type: 'mystery' }, null]) {
    const r = applyFrame(state, frame);
    assert.deepEqual(r.changed, []);
    assert.equal(r.gap || r.stale, false);
  }
});

test('a first ready with a reply our history lacks asks for a refetch', () => {
  const state = createThreadState([userMessage()]);
  const r = applyFrame(state, { type: 'ready', thread_id: 't', active: { message_id: REPLY, seq: 2, content: 'Hi' } });
  assert.equal(r.stale, true);
  const fresh = applyFrame(createThreadState([userMessage()]), { type: 'ready', thread_id: 't', active: null });
  assert.equal(fresh.stale, false);
});

test('a reply the database calls streaming but ready does not is stale and not busy', () => {
  const orphan = { ...userMessage({ id: REPLY, role: 'assistant', status: 'streaming', content: 'chk' }) };
  const state = createThreadState([orphan]);
  assert.equal(isBusy(state), false);
  assert.equal(applyFrame(state, { type: 'ready', thread_id: 't', active: null }).stale, true);
});

test('merging a refetch keeps live text but adopts a finished reply', () => {
  const state = createThreadState([userMessage()]);
  applyFrame(state, { type: 'ready', thread_id: 't', active: { message_id: REPLY, seq: 3, content: 'abc' } });
  const checkpoint = userMessage({ id: REPLY, role: 'assistant', status: 'streaming', content: 'a', created_at: '2024-01-01T00:00:01Z' });
  mergeMessages(state, [userMessage(), checkpoint]);
  assert.equal(content(state), 'abc');

  const final = { ...checkpoint, status: 'complete', content: 'abcdef' };
  const r = mergeMessages(state, [final]);
  assert.deepEqual(r.changed, [REPLY]);
  assert.equal(content(state), 'abcdef');
  assert.equal(state.byId.get(REPLY).status, 'complete');
  assert.equal(state.messages.length, 2);
});

test('older messages merge in before newer ones', () => {
  const state = createThreadState([userMessage()]);
  mergeMessages(state, [userMessage({ id: 'old', client_id: 'x', created_at: '2023-12-31T00:00:00Z' })]);
  assert.deepEqual(state.messages.map((m) => m.id), ['old', userMessage().id]);
});

// ---------------------------------------------------------------- regenerate, edit, branches, titles

function finishedThread() {
  const state = createThreadState([
    userMessage(),
    userMessage({ id: REPLY, role: 'assistant', content: 'old answer', client_id: null, created_at: '2024-01-01T00:00:01Z' }),
  ]);
  applyFrame(state, { type: 'ready', thread_id: 't', active: null });
  return state;
}

test('regenerate hides the last reply until the new one takes its place and streams', () => {
  const state = finishedThread();
  assert.equal(regenerable(state)?.id, REPLY);
  const { command, result } = beginRegenerate(state, 'cid-1');
  assert.deepEqual(command, { command: 'regenerate', client_id: 'cid-1' });
  assert.deepEqual(result.changed, [REPLY]);
  assert.equal(state.byId.get(REPLY).superseded, true);
  assert.equal(isBusy(state), true, 'the composer waits for the answer');
  assert.equal(beginRegenerate(state).command, null, 'not twice');

  const placed = applyFrame(state, {
    type: 'message',
    ts: 1,
    message: {
      id: 'new', role: 'assistant', content: '', status: 'streaming', client_id: 'cid-1', created_at: '2024-01-01T00:03:00Z',
      parent_id: userMessage().id, siblings: { index: 1, count: 2, ids: [REPLY, 'new'] },
    },
  });
  assert.deepEqual(placed.removed, [REPLY], 'the old reply is another branch now');
  assert.equal(state.byId.has(REPLY), false);
  assert.deepEqual(branchOf(state.byId.get('new')), { place: '2/2', previous: REPLY, next: null });
  applyFrame(state, { type: 'start', message_id: 'new', seq: 0, model: 'm' });
  assert.equal(state.awaiting, null);
  applyFrame(state, { type: 'token', message_id: 'new', seq: 1, token: 'fresh' });
  assert.deepEqual(state.messages.map((m) => m.content), ['hello', 'fresh']);
});

test('a refused regenerate shows the old reply again', () => {
  const state = finishedThread();
  beginRegenerate(state);
  const r = applyFrame(state, { type: 'error', code: 'busy', message: 'busy', recoverable: true });
  assert.equal(state.byId.get(REPLY).superseded, false);
  assert.ok(r.changed.includes(REPLY));
  assert.equal(isBusy(state), false);
});

test('nothing to regenerate while a reply streams or when the last message is the user’s', () => {
  const state = createThreadState([userMessage()]);
  assert.equal(regenerable(state), undefined);
  applyFrame(state, { type: 'ready', thread_id: 't', active: { message_id: REPLY, seq: 1, content: 'x' } });
  assert.equal(regenerable(state), undefined);
});

test('edit puts a new version of a user message in its place, confirmed by its message frame', () => {
  const state = finishedThread();
  const userId = userMessage().id;
  assert.equal(editable(state)?.id, userId);
  assert.equal(canEdit(state, userId), true);
  assert.equal(beginEdit(state, REPLY, 'x').command, null, 'only a user message');
  const { command } = beginEdit(state, userId, 'better question', 'cid-2');
  assert.deepEqual(command, { command: 'edit', message_id: userId, message: 'better question', client_id: 'cid-2' });
  assert.equal(state.byId.get(userId).superseded, true);
  assert.equal(state.byId.get(REPLY).superseded, true);
  assert.equal(state.messages.at(-1).content, 'better question');
  assert.equal(state.messages.at(-1).status, 'pending');

  const persisted = userMessage({
    id: 'u2', content: 'better question', client_id: 'cid-2', created_at: '2024-01-01T00:02:00Z',
    parent_id: null, siblings: { index: 1, count: 2, ids: [userId, 'u2'] },
  });
  const r = applyFrame(state, { type: 'message', message: persisted });
  assert.deepEqual(r.renamed, [{ from: 'cid-2', to: 'u2' }]);
  assert.deepEqual(new Set(r.removed), new Set([userId, REPLY]), 'the old version is another branch');
  assert.equal(isBusy(state), true, 'still waiting for the reply to start');
  applyFrame(state, { type: 'start', message_id: 'r2', seq: 0, model: 'm' });
  assert.deepEqual(state.messages.map((m) => m.id), ['u2', 'r2']);
});

test('a refused edit brings the old messages back and fails the new one', () => {
  const state = finishedThread();
  const userId = userMessage().id;
  beginEdit(state, userId, 'new text', 'cid-3');
  const r = applyFrame(state, { type: 'error', code: 'bad_request', message: 'no', recoverable: false });
  assert.equal(state.byId.get(userId).superseded, false);
  assert.equal(state.byId.get(REPLY).superseded, false);
  assert.deepEqual(r.failed, ['cid-3']);
  assert.equal(isBusy(state), false);
});

test('a reconnect while a regenerate is unanswered shows the old reply and refetches', () => {
  const state = finishedThread();
  beginRegenerate(state);
  const r = applyFrame(state, { type: 'ready', thread_id: 't', active: null });
  assert.equal(r.stale, true);
  assert.equal(state.byId.get(REPLY).superseded, false);
  assert.equal(isBusy(state), false);
});

test('another tab\'s edit of an earlier message takes what followed it off the screen', () => {
  const state = createThreadState([
    userMessage({ id: 'q1', parent_id: null }),
    userMessage({ id: 'a1', role: 'assistant', client_id: null, parent_id: 'q1', created_at: '2024-01-01T00:00:01Z' }),
    userMessage({ id: 'q2', client_id: 'c2', parent_id: 'a1', created_at: '2024-01-01T00:00:02Z' }),
    userMessage({ id: 'a2', role: 'assistant', client_id: null, parent_id: 'q2', created_at: '2024-01-01T00:00:03Z' }),
  ]);
  const edited = userMessage({ id: 'q2b', client_id: 'c3', parent_id: 'a1', created_at: '2024-01-01T00:00:04Z' });
  const r = applyFrame(state, { type: 'message', ts: 1, message: edited });
  assert.deepEqual(r.removed, ['q2', 'a2']);
  assert.deepEqual(state.messages.map((m) => m.id), ['q1', 'a1', 'q2b']);
  const again = applyFrame(state, { type: 'message', ts: 2, message: edited });
  assert.deepEqual(again.removed, [], 'a message already shown moves nothing');
  const unknownParent = applyFrame(state, { type: 'message', ts: 3, message: userMessage({ id: 'x', client_id: 'c4', parent_id: 'nowhere', created_at: '2024-01-01T00:00:05Z' }) });
  assert.deepEqual(unknownParent.removed, [], 'nothing to judge by');
});

test('a branch switch shows the path the server sends, whole', () => {
  const state = createThreadState([
    userMessage({ id: 'q1', parent_id: null }),
    userMessage({ id: 'a2', role: 'assistant', client_id: null, parent_id: 'q1', created_at: '2024-01-01T00:00:05Z', siblings: { index: 1, count: 2, ids: ['a1', 'a2'] } }),
  ]);
  assert.deepEqual(branchOf(state.byId.get('a2')), { place: '2/2', previous: 'a1', next: null });
  const r = setPath(state, [
    userMessage({ id: 'q1', parent_id: null }),
    userMessage({ id: 'a1', role: 'assistant', client_id: null, parent_id: 'q1', created_at: '2024-01-01T00:00:01Z', siblings: { index: 0, count: 2, ids: ['a1', 'a2'] } }),
  ], { whole: true });
  assert.deepEqual(r.removed, ['a2']);
  assert.deepEqual(state.messages.map((m) => m.id), ['q1', 'a1']);
  assert.equal(branchOf(state.byId.get('a1')).place, '1/2');
  assert.equal(branchOf(state.byId.get('q1')), null, 'no versions but itself: no arrows');
});

test('a thread frame reports the new title', () => {
  const thread = { id: 't', title: 'Named by the model', created_at: 'a', updated_at: 'b' };
  const r = applyFrame(createThreadState([]), { type: 'thread', ts: 1, thread });
  assert.deepEqual(r.thread, thread);
  assert.deepEqual(r.changed, []);
});

test('a thread_deleted frame reports which thread went, and changes no message', () => {
  const state = finishedThread();
  const r = applyFrame(state, { type: 'thread_deleted', ts: 1, thread_id: 'gone' });
  assert.equal(r.deleted, 'gone');
  assert.equal(state.messages.length, 2);
});

test('a refused message can be retried with the same client_id', () => {
  const state = createThreadState([]);
  const { message } = makeStart('again', 'cid-4');
  addLocalMessage(state, message);
  applyFrame(state, { type: 'error', code: 'rate_limited', message: 'slow down', recoverable: true });
  assert.equal(state.byId.get('cid-4').error.recoverable, true);
  const { command } = retryLocalMessage(state, 'cid-4');
  assert.deepEqual(command, { command: 'start', message: 'again', client_id: 'cid-4' });
  assert.equal(state.byId.get('cid-4').status, 'pending');
  assert.equal(retryLocalMessage(state, 'cid-4').command, null, 'not while it is pending');
});

test('errors are classed as network, timeout, server, rate limit or request', () => {
  const classes = Object.fromEntries(
    ['network', 'timeout', 'provider_error', 'internal', 'interrupted', 'rate_limited', 'busy', 'too_large', 'bad_request', 'unknown'].map((c) => [c, errorClass({ code: c }).kind]),
  );
  assert.deepEqual(classes, {
    network: 'network',
    timeout: 'timeout',
    provider_error: 'server',
    internal: 'server',
    interrupted: 'server',
    rate_limited: 'rate_limit',
    busy: 'request',
    too_large: 'request',
    bad_request: 'request',
    unknown: 'request',
  });
});

test('a heartbeat that finds the streaming reply gone asks for a resync (its end was lost)', () => {
  const state = createThreadState([userMessage()]);
  applyFrame(state, { type: 'ready', thread_id: 't', active: { message_id: REPLY, seq: 2, content: 'ab' } });
  applyFrame(state, token(3, 'c'));
  const r = applyFrame(state, { type: 'heartbeat', ts: 1, active: null });
  assert.equal(r.gap, true);
  assert.equal(state.byId.get(REPLY).status, 'streaming', 'the text stays until the refetch');
});

test('a heartbeat while frames keep coming does not resync, a quiet one that is behind does', () => {
  const state = createThreadState([userMessage()]);
  applyFrame(state, { type: 'ready', thread_id: 't', active: { message_id: REPLY, seq: 2, content: 'ab' } });
  applyFrame(state, token(3, 'c'));
  const busy = applyFrame(state, { type: 'heartbeat', ts: 1, active: { message_id: REPLY, seq: 5 } });
  assert.equal(busy.gap, false, 'frames 4 and 5 may still be on their way');
  const quiet = applyFrame(state, { type: 'heartbeat', ts: 2, active: { message_id: REPLY, seq: 5 } });
  assert.equal(quiet.gap, true, 'nothing arrived for a whole interval: they were dropped');
});

test('a heartbeat that agrees with the client, or an old server without `active`, changes nothing', () => {
  const state = createThreadState([userMessage()]);
  applyFrame(state, { type: 'ready', thread_id: 't', active: { message_id: REPLY, seq: 2, content: 'ab' } });
  assert.equal(applyFrame(state, { type: 'heartbeat', ts: 1, active: { message_id: REPLY, seq: 2 } }).gap, false);
  assert.equal(applyFrame(state, { type: 'heartbeat', ts: 1 }).gap, false);
});

test('tool frames add a step, then replace it when it ends; a snapshot carries the steps', () => {
  const state = createThreadState([userMessage()]);
  applyFrame(state, { type: 'start', message_id: REPLY, seq: 0, model: 'm', ts: 1 });
  applyFrame(state, token(1, 'Let me check. '));
  const call = { type: 'tool', message_id: REPLY, call_id: 'c1', name: 'calculate', arguments: '{"expression":"2+2"}', offset: 14, ts: 1 };
  applyFrame(state, { ...call, seq: 2, status: 'running' });
  assert.deepEqual(state.byId.get(REPLY).steps.map((s) => s.status), ['running']);
  applyFrame(state, { ...call, seq: 3, status: 'done', output: '2+2 = 4', elapsed_ms: 3 });
  applyFrame(state, token(4, 'It is 4.'));
  const reply = state.byId.get(REPLY);
  assert.deepEqual(reply.steps, [{ call_id: 'c1', name: 'calculate', arguments: '{"expression":"2+2"}', status: 'done', offset: 14, output: '2+2 = 4', elapsed_ms: 3 }]);
  assert.equal(reply.content, 'Let me check. It is 4.');
  // A tool frame out of order is a gap like a token's.
  assert.equal(applyFrame(state, { ...call, seq: 9, status: 'done' }).gap, true);

  const reloaded = createThreadState([userMessage()]);
  applyFrame(reloaded, { type: 'ready', thread_id: 't', ts: 1, active: { message_id: REPLY, seq: 2, content: 'Let me check. ', steps: [{ ...call, status: 'running' }] } });
  assert.deepEqual(reloaded.byId.get(REPLY).steps.map((s) => [s.call_id, s.status]), [['c1', 'running']]);
});
