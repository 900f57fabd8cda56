// Tests of the page's model choice and reply ratings (issue 21): the reducer's `feedback`
// frame and the `model` / `history_left_out` fields (static/chat/protocol.js), the client's
// `rate` and `send(..., {model})` (client.js), and the model catalog (models.js). Run with
// `node --test tests/js/`.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { createChatClient } from '../../static/chat/client.js';
import { createModelCatalog, optionLabel } from '../../static/chat/models.js';
import {
  applyFrame, createThreadState, makeStart, mergeMessages, setFeedback,
} from '../../static/chat/protocol.js';

const REPLY = 'r1';
const DOWN = {
  rating: 'down', tags: ['Inaccurate'], comment: 'Wrong year', updated_at: '2026-01-01T00:00:02+00:00',
};

function reply(overrides = {}) {
  return {
    id: REPLY, role: 'assistant', content: 'Hi', status: 'complete', model: 'second-model', ...overrides,
  };
}

test('a saved reply keeps its model, its feedback and how much history was left out', () => {
  const state = createThreadState([reply({ feedback: DOWN, history_left_out: 3 })]);
  const msg = state.byId.get(REPLY);
  assert.equal(msg.model, 'second-model');
  assert.deepEqual(msg.feedback, DOWN);
  assert.equal(msg.history_left_out, 3);
  const plain = createThreadState([reply({ id: 'r2' })]).byId.get('r2');
  assert.equal(plain.feedback, null);
  assert.equal(plain.history_left_out, 0);
});

test('a start frame names the reply’s model and the earlier messages left out of its history', () => {
  const state = createThreadState([]);
  const r = applyFrame(state, {
    type: 'start', ts: 1, message_id: REPLY, seq: 0, model: 'second-model', history_left_out: 12,
  });
  assert.deepEqual(r.changed, [REPLY]);
  const msg = state.byId.get(REPLY);
  assert.equal(msg.model, 'second-model');
  assert.equal(msg.history_left_out, 12);
  assert.equal(msg.feedback, null);
  // Without the field (the usual case) nothing was left out.
  applyFrame(state, { type: 'start', ts: 2, message_id: 'r2', seq: 0, model: 'stub-model' });
  assert.equal(state.byId.get('r2').history_left_out, 0);
});

test('a feedback frame sets the reply’s rating and a null one removes it', () => {
  const state = createThreadState([reply()]);
  const set = applyFrame(state, { type: 'feedback', ts: 1, message_id: REPLY, feedback: DOWN });
  assert.deepEqual(set.changed, [REPLY]);
  assert.deepEqual(state.byId.get(REPLY).feedback, DOWN);

  const again = applyFrame(state, { type: 'feedback', ts: 2, message_id: REPLY, feedback: { ...DOWN } });
  assert.deepEqual(again.changed, [], 'the same feedback again changes nothing to draw');

  const removed = applyFrame(state, { type: 'feedback', ts: 3, message_id: REPLY, feedback: null });
  assert.deepEqual(removed.changed, [REPLY]);
  assert.equal(state.byId.get(REPLY).feedback, null);
});

test('feedback on a reply this state does not hold, or an older rating, changes nothing', () => {
  const state = createThreadState([reply({ feedback: DOWN })]);
  assert.deepEqual(applyFrame(state, { type: 'feedback', ts: 1, message_id: 'elsewhere', feedback: DOWN }).changed, []);
  const older = { ...DOWN, rating: 'up', updated_at: '2026-01-01T00:00:01+00:00' };
  assert.deepEqual(setFeedback(state, REPLY, older).changed, []);
  assert.equal(state.byId.get(REPLY).feedback.rating, 'down');
  // The API's answer to a removal: no rating is no feedback.
  setFeedback(state, REPLY, { rating: null, tags: [], comment: '', updated_at: null });
  assert.equal(state.byId.get(REPLY).feedback, null);
});

test('a refetched reply brings the feedback another tab gave while this one was away', () => {
  const state = createThreadState([reply()]);
  const r = mergeMessages(state, [reply({ feedback: DOWN })]);
  assert.deepEqual(r.changed, [REPLY]);
  assert.deepEqual(state.byId.get(REPLY).feedback, DOWN);
});

test('a start names the model picked for it, and only when one was', () => {
  assert.equal(makeStart('hi', 'c1', { model: 'second-model' }).command.model, 'second-model');
  assert.equal('model' in makeStart('hi', 'c2').command, false);
  assert.equal('model' in makeStart('hi', 'c3', { model: null }).command, false);
});

class FakeSocket {
  static OPEN = 1;

  static last = null;

  constructor() {
    this.readyState = 0;
    this.sent = [];
    FakeSocket.last = this;
  }

  send(data) {
    this.sent.push(JSON.parse(data));
  }

  close() {
    this.readyState = 3;
  }

  accept() {
    this.readyState = FakeSocket.OPEN;
    this.onopen?.();
    this.onmessage?.({ data: JSON.stringify({ type: 'ready', ts: 1, thread_id: 't', active: null }) });
  }

  frame(frame) {
    this.onmessage?.({ data: JSON.stringify({ ts: 1, ...frame }) });
  }
}

function makeClient(messages = [reply()]) {
  const client = createChatClient({
    threadId: 't',
    url: 'ws://test/ws/threads/t/',
    messages,
    WebSocketImpl: FakeSocket,
    watchVisibility: false,
    loadMessages: async () => [],
  });
  FakeSocket.last.accept();
  const events = [];
  client.on('feedback', (payload) => events.push(payload));
  return { client, socket: FakeSocket.last, events };
}

async function withFetch(respond, run) {
  const calls = [];
  const saved = globalThis.fetch;
  globalThis.fetch = async (url, init) => {
    calls.push({ url, init, body: init.body ? JSON.parse(init.body) : undefined });
    const { status = 200, body } = respond(calls.at(-1));
    return new Response(body === undefined ? '' : JSON.stringify(body), { status });
  };
  try {
    await run(calls);
  } finally {
    globalThis.fetch = saved;
  }
}

test('send with a model names it in the start command', () => {
  const { client, socket } = makeClient([]);
  client.send('hello', { model: 'second-model' });
  client.send('again', 'cid-kept');
  const starts = socket.sent.filter((c) => c.command === 'start');
  assert.equal(starts[0].model, 'second-model');
  assert.equal(starts[1].client_id, 'cid-kept', 'a client_id alone is still accepted');
  assert.equal('model' in starts[1], false);
  client.dispose();
});

test('rate PUTs the feedback, shows the saved one and tells listeners; a removal clears it', async () => {
  const { client, events } = makeClient();
  await withFetch((call) => ({
    body: call.body.rating ? { ...call.body, updated_at: '2026-01-01T00:00:05+00:00' } : { rating: null, tags: [], comment: '', updated_at: null },
  }), async (calls) => {
    const saved = await client.rate(REPLY, { rating: 'down', tags: ['Inaccurate'], comment: 'Wrong year' });
    assert.equal(calls[0].url, `/api/messages/${REPLY}/feedback/`);
    assert.equal(calls[0].init.method, 'PUT');
    assert.deepEqual(calls[0].body, { rating: 'down', tags: ['Inaccurate'], comment: 'Wrong year' });
    assert.equal(saved.rating, 'down');
    assert.deepEqual(client.state.byId.get(REPLY).feedback.tags, ['Inaccurate']);
    assert.equal(events.length, 1);

    assert.equal(await client.rate(REPLY, { rating: null }), null);
    assert.equal(client.state.byId.get(REPLY).feedback, null);
    assert.equal(events.length, 2);
  });
  client.dispose();
});

test('a refused rating throws the server’s message and leaves the saved one as it was', async () => {
  const { client } = makeClient([reply({ feedback: DOWN })]);
  await withFetch(() => ({ status: 400, body: { type: 'error', code: 'bad_request', message: '`tags` must be a list of at most 10' } }), async () => {
    await assert.rejects(client.rate(REPLY, { rating: 'up', tags: Array(11).fill('x') }), (error) => {
      assert.equal(error.status, 400);
      assert.match(error.message, /at most 10/);
      return true;
    });
  });
  assert.deepEqual(client.state.byId.get(REPLY).feedback, DOWN);
  client.dispose();
});

test('another tab’s feedback frame reaches the state and the feedback event', () => {
  const { client, socket, events } = makeClient();
  socket.frame({ type: 'feedback', message_id: REPLY, feedback: DOWN });
  assert.deepEqual(client.state.byId.get(REPLY).feedback, DOWN);
  assert.equal(events.length, 1);
  assert.equal(events[0].message.id, REPLY);
  client.dispose();
});

test('the catalog labels models, finds the one a new thread takes, and knows when to offer a choice', () => {
  const models = createModelCatalog([
    { id: 'stub-model', label: 'stub-model', provider: 'compatible', default: true, vision: false, offlineDemo: false },
    { id: 'second-model', label: 'Second model', provider: 'compatible', default: false, vision: false, offlineDemo: false },
  ], 'second-model');
  assert.equal(models.several, true);
  assert.equal(models.providers, false);
  assert.equal(models.preferred(), 'second-model');
  assert.equal(models.label('second-model'), 'Second model');
  assert.equal(models.label('gone-model'), 'gone-model', 'a model no longer offered shows its id');
  models.prefer('gone-model');
  assert.equal(models.preferred(), 'second-model', 'only a model offered can be preferred');
  models.prefer('stub-model');
  assert.equal(models.preferred(), 'stub-model');

  const one = createModelCatalog([{ id: 'a', label: 'a', provider: 'openai', default: false }], 'unknown');
  assert.equal(one.several, false);
  assert.equal(one.preferred(), 'a', 'an unknown preference falls back to the default, else the first');
  assert.equal(createModelCatalog([]).preferred(), null);
});

test('the picker marks the offline demo once', () => {
  assert.equal(optionLabel({ id: 'x', label: 'Tiny', offlineDemo: true }), 'Tiny (offline demo)');
  assert.equal(optionLabel({ id: 'x', label: 'SmolLM2 (offline demo)', offlineDemo: true }), 'SmolLM2 (offline demo)');
  assert.equal(optionLabel({ id: 'x', label: 'GPT', offlineDemo: false }), 'GPT');
});
