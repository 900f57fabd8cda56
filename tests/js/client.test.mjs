// Tests for static/chat/client.js and connection.js against a fake WebSocket and fake timers:
// run with `node --test tests/js/`.
import assert from 'node:assert/strict';
import { mock, test } from 'node:test';

import { createChatClient } from '../../static/chat/client.js';
import { backoffDelay, connectThread } from '../../static/chat/connection.js';

const REPLY = 'r1';

class FakeSocket {
  static OPEN = 1;
  static all = [];

  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.readyState = 0;
    this.sent = [];
    this.closedWith = null;
    FakeSocket.all.push(this);
  }

  send(data) {
    this.sent.push(JSON.parse(data));
  }

  close(code) {
    this.readyState = 3;
    this.closedWith = code;
  }

  // Server side of the fake.
  accept(active = null) {
    this.readyState = FakeSocket.OPEN;
    this.onopen?.();
    this.frame({ type: 'ready', thread_id: 't', active });
  }

  frame(frame) {
    this.onmessage?.({ data: JSON.stringify({ ts: 1, ...frame }) });
  }

  drop(code = 1006) {
    this.readyState = 3;
    this.onclose?.({ code });
  }
}

const latest = () => FakeSocket.all.at(-1);

function makeClient(options = {}) {
  FakeSocket.all = [];
  const loads = [];
  const client = createChatClient({
    threadId: 't',
    url: 'ws://test/ws/threads/t/',
    WebSocketImpl: FakeSocket,
    watchVisibility: false,
    loadMessages: async (id) => {
      loads.push(id);
      return options.page ?? [];
    },
    ...options,
  });
  const events = [];
  for (const type of ['connection', 'ready', 'message', 'start', 'token', 'complete', 'error', 'path', 'thread', 'thread_deleted', 'fatal']) {
    client.on(type, (payload) => events.push([type, payload]));
  }
  return { client, events, loads };
}

const named = (events, type) => events.filter(([t]) => t === type).map(([, p]) => p);

test('send is queued until ready, then a reply streams as events with its whole text', () => {
  const { client, events } = makeClient();
  const clientId = client.send('hi');
  assert.deepEqual(latest().sent, [], 'nothing is sent before ready');
  assert.equal(client.busy(), true);

  latest().accept();
  // A start says the user's time zone (for the agent's clock tool).
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  assert.deepEqual(latest().sent, [{ command: 'start', message: 'hi', client_id: clientId, time_zone: zone }]);
  latest().frame({ type: 'message', message: { id: 'u1', role: 'user', content: 'hi', status: 'complete', client_id: clientId } });
  latest().frame({ type: 'start', message_id: REPLY, seq: 0, model: 'm' });
  latest().frame({ type: 'token', message_id: REPLY, seq: 1, token: 'Hel' });
  latest().frame({ type: 'token', message_id: REPLY, seq: 1, token: 'Hel' });
  latest().frame({ type: 'token', message_id: REPLY, seq: 2, token: 'lo' });
  const metrics = { totalTokens: 2, elapsedSeconds: 1, throughputTokensPerSec: 2, timeToFirstTokenMs: 10 };
  latest().frame({ type: 'complete', message_id: REPLY, seq: 3, status: 'complete', metrics });

  assert.deepEqual(named(events, 'message').map((p) => p.message.id), ['u1']);
  assert.deepEqual(named(events, 'token').map((p) => [p.token, p.text]), [['Hel', 'Hel'], ['lo', 'Hello']], 'the duplicate is dropped');
  assert.deepEqual(named(events, 'complete').map((p) => [p.status, p.metrics]), [['complete', metrics]]);
  assert.equal(client.busy(), false);
  assert.deepEqual(client.state.messages.map((m) => m.content), ['hi', 'Hello']);
  client.dispose();
});

test('a seq gap asks for a resync, and the snapshot fills the gap without doubling text', () => {
  const { client, events } = makeClient();
  latest().accept();
  latest().frame({ type: 'start', message_id: REPLY, seq: 0, model: 'm' });
  latest().frame({ type: 'token', message_id: REPLY, seq: 1, token: 'a' });
  latest().frame({ type: 'token', message_id: REPLY, seq: 3, token: 'c' });
  assert.deepEqual(latest().sent, [{ command: 'resync' }]);
  latest().frame({ type: 'ready', thread_id: 't', active: { message_id: REPLY, seq: 3, content: 'abc' } });
  latest().frame({ type: 'token', message_id: REPLY, seq: 3, token: 'c' });
  latest().frame({ type: 'token', message_id: REPLY, seq: 4, token: 'd' });
  assert.equal(client.state.byId.get(REPLY).content, 'abcd');
  assert.equal(named(events, 'token').at(-1).text, 'abcd');
  client.dispose();
});

test('a reload mid-reply resumes from the ready snapshot', () => {
  const { client, events } = makeClient({
    messages: [{ id: 'u1', role: 'user', content: 'q', status: 'complete', created_at: '2024-01-01T00:00:00Z' }],
  });
  latest().accept({ message_id: REPLY, seq: 5, content: 'Hello' });
  latest().frame({ type: 'token', message_id: REPLY, seq: 6, token: ' world' });
  assert.equal(client.state.byId.get(REPLY).content, 'Hello world');
  assert.deepEqual(named(events, 'ready')[0].active, { message_id: REPLY, seq: 5, content: 'Hello' });
  client.dispose();
});

test('a dropped socket reconnects with backoff, resumes, and refetches what it missed', async () => {
  mock.timers.enable({ apis: ['setTimeout', 'setInterval'] });
  try {
    const { client, events, loads } = makeClient();
    latest().accept({ message_id: REPLY, seq: 1, content: 'a' });
    latest().drop();
    assert.equal(client.connection(), 'reconnecting');
    assert.equal(FakeSocket.all.length, 1);
    mock.timers.tick(600);
    assert.equal(FakeSocket.all.length, 2, 'a new socket after the backoff');
    latest().accept({ message_id: REPLY, seq: 4, content: 'abcd' });
    assert.equal(client.connection(), 'open');
    assert.equal(client.state.byId.get(REPLY).content, 'abcd');
    for (let i = 0; i < 3; i += 1) await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(loads, ['t', 't'], 'a reply missing from history, then the reconnect: each refetches');
    assert.deepEqual(named(events, 'connection').map((p) => p.state), ['open', 'reconnecting', 'open']);
    client.dispose();
  } finally {
    mock.timers.reset();
  }
});

test('a silent socket is declared dead and replaced; heartbeats keep a live one', () => {
  mock.timers.enable({ apis: ['setTimeout', 'setInterval'] });
  try {
    FakeSocket.all = [];
    const conn = connectThread({
      threadId: 't',
      url: 'ws://test/',
      onFrame: () => {},
      WebSocketImpl: FakeSocket,
      timing: { heartbeatMs: 1000, deadAfterMs: 2500, backoffBaseMs: 1, backoffCapMs: 1 },
    });
    latest().accept();
    mock.timers.tick(1000);
    assert.deepEqual(latest().sent, [{ command: 'heartbeat' }]);
    latest().frame({ type: 'heartbeat' });
    mock.timers.tick(2000);
    assert.equal(FakeSocket.all.length, 1, 'answered heartbeats keep it');
    mock.timers.tick(1000);
    assert.equal(FakeSocket.all[0].closedWith, 4000, 'silence closes it');
    mock.timers.tick(5);
    assert.equal(FakeSocket.all.length, 2);
    conn.dispose();
  } finally {
    mock.timers.reset();
  }
});

test('check() resyncs an open socket and reconnects a closed one at once', () => {
  mock.timers.enable({ apis: ['setTimeout', 'setInterval'] });
  try {
    const { client } = makeClient();
    latest().accept();
    client.check();
    assert.deepEqual(latest().sent, [{ command: 'resync' }]);
    latest().drop();
    client.check();
    assert.equal(FakeSocket.all.length, 2, 'no backoff wait when the user is looking');
    client.dispose();
  } finally {
    mock.timers.reset();
  }
});

test('backoff grows exponentially, is capped, and is jittered', () => {
  assert.equal(backoffDelay(0, () => 1), 500);
  assert.equal(backoffDelay(3, () => 1), 4000);
  assert.equal(backoffDelay(20, () => 1), 15000);
  assert.equal(backoffDelay(3, () => 0.5), 2000);
});

test('stop, regenerate and edit send their commands', () => {
  const { client, events } = makeClient({
    messages: [
      { id: 'u1', role: 'user', content: 'q', status: 'complete', created_at: '2024-01-01T00:00:00Z' },
      { id: REPLY, role: 'assistant', content: 'a', status: 'complete', created_at: '2024-01-01T00:00:01Z' },
    ],
  });
  latest().accept();
  assert.equal(client.regenerate(), true);
  assert.equal(latest().sent[0].command, 'regenerate');
  latest().frame({
    type: 'message',
    message: { id: 'r2', role: 'assistant', content: '', status: 'streaming', created_at: '2024-01-01T00:00:02Z', parent_id: 'u1' },
  });
  assert.equal(client.state.byId.has(REPLY), false, 'the old reply is another branch now');
  latest().frame({ type: 'start', message_id: 'r2', seq: 0, model: 'm' });
  client.stop();
  assert.deepEqual(latest().sent[1], { command: 'stop' });
  latest().frame({ type: 'complete', message_id: 'r2', seq: 1, status: 'cancelled', metrics: null });
  assert.equal(client.edit('u1', 'better'), true);
  assert.deepEqual(latest().sent[2].command, 'edit');
  assert.deepEqual(latest().sent[2].message, 'better');
  client.dispose();
});

test('a refused send names the message it left failed, so the page says it once, there', () => {
  const { client, events } = makeClient();
  latest().accept();
  latest().frame({ type: 'ready', thread_id: 't', active: null });
  const clientId = client.send('hello');
  latest().frame({ type: 'error', code: 'rate_limited', message: 'At most 3 replies at once; wait for one to end.', recoverable: true });
  const [error] = named(events, 'error');
  const failed = client.state.messages.find((m) => m.client_id === clientId);
  assert.equal(failed.status, 'error');
  assert.equal(error.refused, failed.id);
  client.dispose();
});

test('errors carry their class; a thread frame reports the title; fatal closes stop it', () => {
  const { client, events } = makeClient();
  latest().accept();
  latest().frame({ type: 'error', code: 'rate_limited', message: 'slow', recoverable: true });
  latest().frame({ type: 'thread', thread: { id: 't', title: 'New title' } });
  assert.deepEqual(named(events, 'error')[0], { code: 'rate_limited', message: 'slow', recoverable: true, kind: 'rate_limit', messageId: null, refused: null });
  assert.equal(named(events, 'thread')[0].thread.title, 'New title');
  latest().frame({ type: 'thread_deleted', thread_id: 'other' });
  assert.deepEqual(named(events, 'thread_deleted'), [{ threadId: 'other' }]);
  latest().drop(4404);
  assert.deepEqual(named(events, 'fatal'), [{ code: 4404 }]);
  assert.equal(client.connection(), 'offline');
  client.dispose();
});

test('too many sockets (4429) is told once and retried with backoff, not fatal', () => {
  mock.timers.enable({ apis: ['setTimeout', 'setInterval'] });
  try {
    const { client, events } = makeClient();
    latest().drop(4429);
    assert.deepEqual(named(events, 'error').map((e) => [e.code, e.kind]), [['too_many_sockets', 'limit']]);
    assert.deepEqual(named(events, 'fatal'), []);
    assert.notEqual(client.connection(), 'offline');
    mock.timers.tick(600);
    assert.equal(FakeSocket.all.length, 2, 'a new socket after the backoff');
    latest().accept();
    assert.equal(client.connection(), 'open');
    client.dispose();
  } finally {
    mock.timers.reset();
  }
});

test('no event fires after dispose', () => {
  const { client, events } = makeClient();
  const socket = latest();
  socket.accept();
  const before = events.length;
  client.dispose();
  assert.equal(socket.closedWith, 1000);
  socket.frame({ type: 'start', message_id: REPLY, seq: 0 });
  assert.equal(events.length, before);
});

test('a page elsewhere connects to the product with a client secret as a subprotocol', async () => {
  FakeSocket.all = [];
  const requests = [];
  const realFetch = globalThis.fetch;
  globalThis.fetch = async (url, init) => {
    requests.push([url, init.headers.Authorization, init.credentials]);
    return { ok: true, json: async () => ({ results: [] }) };
  };
  try {
    const client = createChatClient({
      threadId: 't1',
      baseUrl: 'https://chat.example.com/',
      clientSecret: 'sek',
      WebSocketImpl: FakeSocket,
      watchVisibility: false,
    });
    assert.equal(latest().url, 'wss://chat.example.com/ws/threads/t1/');
    assert.deepEqual(latest().protocols, ['chat', 'auth.sek']);
    latest().accept({ message_id: REPLY, seq: 1, content: 'x' });
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(requests, [['https://chat.example.com/api/threads/t1/messages/', 'Bearer sek', 'omit']]);
    client.dispose();
  } finally {
    globalThis.fetch = realFetch;
  }
});

test('a thread frame naming a leaf not shown is a switch: the path is read again, whole', async () => {
  const { client, events, loads } = makeClient({
    messages: [
      { id: 'u1', role: 'user', content: 'q', status: 'complete', created_at: '2024-01-01T00:00:00Z', parent_id: null },
      { id: 'a2', role: 'assistant', content: 'two', status: 'complete', created_at: '2024-01-01T00:00:05Z', parent_id: 'u1' },
    ],
    page: [
      { id: 'u1', role: 'user', content: 'q', status: 'complete', created_at: '2024-01-01T00:00:00Z', parent_id: null },
      { id: 'a1', role: 'assistant', content: 'one', status: 'complete', created_at: '2024-01-01T00:00:01Z', parent_id: 'u1' },
    ],
  });
  latest().accept();
  latest().frame({ type: 'thread', thread: { id: 't', title: 'x', active_leaf: 'a2' } });
  assert.deepEqual(loads, [], 'the leaf shown: no switch');
  latest().frame({ type: 'thread', thread: { id: 't', title: 'x', active_leaf: 'a1' } });
  await new Promise((resolve) => setTimeout(resolve, 0));
  assert.deepEqual(loads, ['t']);
  assert.deepEqual(client.state.messages.map((m) => m.content), ['q', 'one']);
  assert.deepEqual(named(events, 'path'), [{ ids: ['a2'] }]);
  client.dispose();
});

test('read by pages, a switch says the new path\'s cursor to earlier messages', async () => {
  const { client, events } = makeClient({
    messages: [
      { id: 'u1', role: 'user', content: 'q', status: 'complete', created_at: '2024-01-01T00:00:00Z', parent_id: null },
      { id: 'a2', role: 'assistant', content: 'two', status: 'complete', created_at: '2024-01-01T00:00:05Z', parent_id: 'u1' },
    ],
    page: {
      previous: '/api/threads/t/messages/?cursor=older',
      results: [
        { id: 'u1', role: 'user', content: 'q', status: 'complete', created_at: '2024-01-01T00:00:00Z', parent_id: null },
        { id: 'a1', role: 'assistant', content: 'one', status: 'complete', created_at: '2024-01-01T00:00:01Z', parent_id: 'u1' },
      ],
    },
  });
  latest().accept();
  latest().frame({ type: 'thread', thread: { id: 't', title: 'x', active_leaf: 'a1' } });
  await new Promise((resolve) => setTimeout(resolve, 0));
  assert.deepEqual(client.state.messages.map((m) => m.content), ['q', 'one']);
  assert.deepEqual(named(events, 'path'), [{ ids: ['a2'], previous: '/api/threads/t/messages/?cursor=older' }]);
  client.dispose();
});
