// The streaming POST's reader: the SSE parser, and a stream resumed after it breaks. Run with
// `node --test clients/react/tests/`.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { createEventParser, StreamError, streamMessage } from '../src/stream.js';
import { fakeFetch, sse, until } from './fake-fetch.mjs';

const REPLY = 'a1a1a1a1-0000-4000-8000-000000000001';
const FAST = { backoffBaseMs: 1, backoffCapMs: 1 };
const body = { message: 'hi', client_id: 'c1' };

test('the parser keeps a line cut between chunks and skips comments', () => {
  const events = [];
  const parser = createEventParser((event) => events.push(event));
  const text = `: heartbeat\n\nid: 3\r\ndata: {"a":\ndata: 1}\n\n${sse({ type: 'token' })}`;
  for (const ch of text) parser.feed(ch);
  assert.deepEqual(events.map((e) => e.data), ['{"a":\n1}', JSON.stringify({ ts: 1, type: 'token' })]);
  assert.equal(events[0].id, '3');
  parser.feed('data: half');
  parser.reset();
  parser.feed('\n\n');
  assert.equal(events.length, 2, 'reset drops the unfinished event');
});

test('frames come one by one until the reply ends, with the thread from X-Thread-Id', async () => {
  const server = fakeFetch();
  const frames = [];
  let thread = null;
  const done = streamMessage({ body, fetch: server.fetch, onFrame: (f) => frames.push(f), onThread: (id) => { thread = id; } });
  await until(() => server.latest()?.open, 'the request');
  const request = server.latest();
  assert.equal(request.url, '/api/stream/message');
  assert.equal(request.init.headers.Accept, 'text/event-stream');
  request.open('t9');
  request.write(sse({ type: 'start', message_id: REPLY, seq: 0, model: 'm' }, 0));
  request.write(sse({ type: 'token', message_id: REPLY, seq: 1, token: 'Hel' }, 1).slice(0, 20));
  await until(() => frames.length === 1, 'the start frame');
  request.write(sse({ type: 'token', message_id: REPLY, seq: 1, token: 'Hel' }, 1).slice(20));
  request.write(sse({ type: 'complete', message_id: REPLY, seq: 2, status: 'complete', metrics: null }, 2));
  assert.deepEqual(await done, { threadId: 't9' });
  assert.equal(thread, 't9');
  assert.deepEqual(frames.map((f) => f.type), ['start', 'token', 'complete']);
});

test('a broken stream is asked for again with the same client_id and the thread it named', async () => {
  const server = fakeFetch();
  const frames = [];
  const retries = [];
  const done = streamMessage({ body, fetch: server.fetch, timing: FAST, onFrame: (f) => frames.push(f), onRetry: (n) => retries.push(n) });
  await until(() => server.latest()?.open);
  server.latest().open('t9');
  server.latest().write(sse({ type: 'start', message_id: REPLY, seq: 0, model: 'm' }));
  await until(() => frames.length === 1);
  server.latest().break();
  await until(() => server.requests.length === 2, 'the second request');
  const again = server.latest();
  assert.deepEqual(again.body, { ...body, thread_id: 't9' });
  assert.deepEqual(retries, [1]);
  // The stream's own failure (an `internal` error without a message_id) is a break too.
  again.open('t9');
  again.write(sse({ type: 'error', code: 'internal', message: 'stream failed', recoverable: true }));
  await until(() => server.requests.length === 3, 'the third request');
  server.latest().open('t9');
  server.latest().write(sse({ type: 'complete', message_id: REPLY, seq: 1, status: 'complete', metrics: null }));
  await done;
  assert.deepEqual(frames.map((f) => f.type), ['start', 'complete'], 'the stream failure is not a frame of the reply');
});

test('a refusal is not retried and carries the server\'s error frame', async () => {
  const server = fakeFetch();
  const done = streamMessage({ body, fetch: server.fetch, timing: FAST, onFrame: () => {} });
  await until(() => server.latest()?.refuse);
  server.latest().refuse(429, { type: 'error', ts: 1, code: 'rate_limited', message: 'Slow down.', recoverable: true });
  await assert.rejects(done, (error) => {
    assert.ok(error instanceof StreamError);
    assert.equal(error.code, 'rate_limited');
    assert.equal(error.status, 429);
    assert.equal(error.frame.code, 'rate_limited');
    return true;
  });
  assert.equal(server.requests.length, 1);
});

test('a first request without a thread that got no answer is not sent again', async () => {
  const server = fakeFetch();
  const done = streamMessage({ body, fetch: server.fetch, timing: FAST, onFrame: () => {} });
  await until(() => server.latest()?.fail);
  server.latest().fail();
  await assert.rejects(done, { name: 'StreamError', code: 'network' });
  assert.equal(server.requests.length, 1, 'the server may have made a thread: a retry could make another');
});

test('abort stops reading and retrying', async () => {
  const server = fakeFetch();
  const controller = new AbortController();
  const done = streamMessage({ body: { ...body, thread_id: 't1' }, fetch: server.fetch, signal: controller.signal, timing: FAST, onFrame: () => {} });
  await until(() => server.latest()?.open);
  server.latest().open('t1');
  controller.abort();
  await assert.rejects(done, { name: 'AbortError' });
  assert.equal(server.requests.length, 1);
});
