// The page's rules that must have one source and agree with the server: title cutting,
// error classes, terminal statuses, and the one fetcher of a thread's messages.
// Run with `node --test tests/js/`.
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { test } from 'node:test';

import { listMessages } from '../../static/chat/api.js';
import { fetchNewestMessages } from '../../static/chat/client.js';
import {
  addLocalMessage,
  applyFrame,
  createThreadState,
  errorClass,
  isTerminal,
  makeStart,
  TERMINAL_STATUSES,
  titleFromText,
} from '../../static/chat/protocol.js';

const STATIC = new URL('../../static/chat/', import.meta.url);

test('a title is cut from the first message exactly as the server cuts it', () => {
  // Expected values are chat/services.py title_from_text's answers for the same input.
  const cases = [
    ['  Hello \n\t world  ', 'Hello world'],
    ['a'.repeat(60), 'a'.repeat(60)],
    ['How do I configure nginx as a reverse proxy for a Django Channels app?', 'How do I configure nginx as a reverse proxy for a Django…'],
    ['Short question, then a long tail of words that goes past sixty chars.', 'Short question, then a long tail of words that goes past…'],
    // A word ending exactly at character 60 is dropped: the server does not look past it.
    [`${'x'.repeat(54)} abcde fgh`, `${'x'.repeat(54)}…`],
    // No space within 60 characters: a hard cut.
    ['z'.repeat(75), `${'z'.repeat(60)}…`],
    // Punctuation before the cut goes.
    [`${'a'.repeat(50)}, bcdefghijklmnop`, `${'a'.repeat(50)}…`],
    // Lengths count code points, as Python's do.
    [`${'😀'.repeat(30)} ${'😀'.repeat(40)}`, `${'😀'.repeat(30)}…`],
    // Whitespace is Python's: no-break and ideographic spaces collapse, a BOM does not.
    ['non\u00a0breaking\u3000spaces and a\ufeffBOM', 'non breaking spaces and a\ufeffBOM'],
  ];
  for (const [text, title] of cases) assert.equal(titleFromText(text), title, JSON.stringify(text));
});

test('the server’s recoverable wins over the class’s guess', () => {
  assert.deepEqual(errorClass({ code: 'provider_error' }), { kind: 'server', recoverable: true });
  assert.deepEqual(errorClass({ code: 'provider_error', recoverable: false }), { kind: 'server', recoverable: false });
  assert.deepEqual(errorClass({ code: 'bad_request' }), { kind: 'request', recoverable: false });
  assert.deepEqual(errorClass({ code: 'bad_request', recoverable: true }), { kind: 'request', recoverable: true });
  assert.deepEqual(errorClass({ code: 'quota_exceeded' }), { kind: 'request', recoverable: false });
  assert.deepEqual(errorClass({ code: 'too_many_sockets' }), { kind: 'limit', recoverable: true });
});

test('a failed request is classed by its HTTP status, or as the network when it got none', () => {
  assert.deepEqual(errorClass(new TypeError('Failed to fetch')), { kind: 'network', recoverable: true });
  assert.deepEqual(errorClass(Object.assign(new Error('x'), { status: 502 })), { kind: 'server', recoverable: true });
  assert.deepEqual(errorClass(Object.assign(new Error('x'), { status: 429 })), { kind: 'rate_limit', recoverable: true });
  assert.deepEqual(errorClass(Object.assign(new Error('x'), { status: 403 })), { kind: 'request', recoverable: false });
  assert.deepEqual(errorClass(Object.assign(new Error('x'), { status: 503, recoverable: false })), { kind: 'server', recoverable: false });
});

test('a reply that failed keeps the server’s recoverable, so its Retry follows the server', () => {
  const state = createThreadState([]);
  applyFrame(state, { type: 'ready', thread_id: 't', active: { message_id: 'r1', seq: 0, content: '' } });
  applyFrame(state, {
    type: 'error', code: 'provider_error', message: 'bad key', recoverable: false, message_id: 'r1', seq: 1,
  });
  const { error } = state.byId.get('r1');
  assert.equal(errorClass(error).recoverable, false, 'the code alone would say retry');
  // A reply saved with an error has only its code: the guess applies.
  const saved = createThreadState([{ id: 'r2', role: 'assistant', status: 'error', error: { code: 'provider_error', message: 'x' } }]);
  assert.equal(errorClass(saved.byId.get('r2').error).recoverable, true);
});

test('a spent budget or a draining server refuses the pending message instead of leaving it sending', () => {
  for (const code of ['quota_exceeded', 'interrupted']) {
    const state = createThreadState([]);
    const { message } = makeStart('hello');
    addLocalMessage(state, message);
    const r = applyFrame(state, { type: 'error', code, message: 'no', recoverable: code === 'interrupted' });
    assert.deepEqual(r.failed, [message.id], code);
    assert.equal(state.byId.get(message.id).status, 'error');
    assert.equal(errorClass(state.byId.get(message.id).error).recoverable, code === 'interrupted');
  }
});

test('the terminal statuses are the server’s four, and only they end a message', () => {
  assert.deepEqual([...TERMINAL_STATUSES].sort(), ['cancelled', 'complete', 'error', 'interrupted']);
  assert.ok(Object.isFrozen(TERMINAL_STATUSES));
  for (const status of TERMINAL_STATUSES) assert.equal(isTerminal(status), true, status);
  for (const status of ['pending', 'streaming', undefined]) assert.equal(isTerminal(status), false, String(status));
});

async function withFetch(answer, body) {
  const calls = [];
  const saved = globalThis.fetch;
  globalThis.fetch = async (url, init) => {
    calls.push({ url, init });
    return answer;
  };
  try {
    return { value: await body(), calls };
  } finally {
    globalThis.fetch = saved;
  }
}

const ok = (data) => ({ ok: true, status: 200, statusText: 'OK', text: async () => JSON.stringify(data) });

test('the client reads a thread’s messages through api.js, with a bearer secret from elsewhere', async () => {
  const page = { next: null, previous: null, results: [{ id: 'm1' }] };
  const { value, calls } = await withFetch(ok(page), () =>
    fetchNewestMessages('t 1', { baseUrl: 'https://chat.example.com/', clientSecret: 's3cret' }),
  );
  assert.deepEqual(value, [{ id: 'm1' }]);
  assert.equal(calls[0].url, 'https://chat.example.com/api/threads/t%201/messages/');
  assert.equal(calls[0].init.headers.Authorization, 'Bearer s3cret');
  assert.equal(calls[0].init.credentials, 'omit');
});

test('an earlier page follows the cursor link on the same origin, and a failure carries the server’s recoverable', async () => {
  const { calls } = await withFetch(ok({ results: [] }), () =>
    listMessages('t', { cursorUrl: 'http://internal:8000/api/threads/t/messages/?cursor=abc', baseUrl: 'https://chat.example.com' }),
  );
  assert.equal(calls[0].url, 'https://chat.example.com/api/threads/t/messages/?cursor=abc');
  const refused = { ok: false, status: 503, statusText: 'Unavailable', text: async () => JSON.stringify({ detail: 'later', recoverable: false }) };
  await assert.rejects(
    withFetch(refused, () => listMessages('t', { baseUrl: 'https://chat.example.com' })),
    (error) => error.status === 503 && error.recoverable === false && errorClass(error).recoverable === false,
  );
});

test('only api.js builds the messages URL', () => {
  const builders = readdirSync(STATIC)
    .filter((name) => name.endsWith('.js'))
    .filter((name) => readFileSync(new URL(name, STATIC), 'utf8').includes('/messages/'));
  assert.deepEqual(builders, ['api.js']);
});

test('the page preloads every module it imports', () => {
  const html = readFileSync(new URL('../../templates/chat/index.html', import.meta.url), 'utf8');
  const preloaded = new Set([...html.matchAll(/rel="modulepreload" href="\{% static '([^']+)' %\}"/g)].map((m) => m[1]));
  const staticRoot = new URL('../', STATIC);
  const seen = new Set();
  const visit = (path) => {
    if (seen.has(path)) return;
    seen.add(path);
    const source = readFileSync(new URL(path, staticRoot), 'utf8');
    for (const [, spec] of source.matchAll(/^import\s[^'"]*['"](\.{1,2}\/[^'"]+)['"]/gm)) {
      visit(new URL(spec, new URL(path, staticRoot)).href.slice(staticRoot.href.length));
    }
  };
  visit('chat/main.js');
  assert.deepEqual([...seen].filter((path) => !preloaded.has(path)), []);
});
