// Tests for sharing from the page (issue 23): what the share calls of api.js send, and the
// line the share dialog shows under a link (sharedialog.js). Run with `node --test tests/js/`.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { createShare, listShares, revokeShare } from '../../static/chat/api.js';

/** Run `call` with a fetch that records its request and answers `status` with `body`. */
async function recorded(call, { status = 200, body = null } = {}) {
  const sent = [];
  const before = globalThis.fetch;
  globalThis.fetch = async (url, init) => {
    sent.push({ url, ...init });
    return new Response(body === null ? null : JSON.stringify(body), { status });
  };
  try {
    return { result: await call(), sent };
  } finally {
    globalThis.fetch = before;
  }
}

test('a share is made with its expiry and nothing else, revoked and listed by token and thread', async () => {
  const share = { token: 't0k', url: 'http://x/s/t0k/', up_to: 'm', created_at: '', expires_at: null };
  const made = await recorded(() => createShare('th/1', { expiresIn: 3600 }), { status: 201, body: share });
  assert.deepEqual(made.result, share);
  assert.equal(made.sent[0].url, '/api/threads/th%2F1/shares/');
  assert.equal(made.sent[0].method, 'POST');
  assert.deepEqual(JSON.parse(made.sent[0].body), { expires_in: 3600 });

  const never = await recorded(() => createShare('th', {}), { status: 201, body: share });
  assert.deepEqual(JSON.parse(never.sent[0].body), {}, 'no expiry: the share never expires');

  const revoked = await recorded(() => revokeShare('a-b_c'), { status: 204 });
  assert.equal(revoked.result, null);
  assert.deepEqual([revoked.sent[0].method, revoked.sent[0].url], ['DELETE', '/api/shares/a-b_c/']);

  const listed = await recorded(() => listShares('th'), { body: [share] });
  assert.deepEqual(listed.result, [share]);
});

test('a refused share throws with what the server said', async () => {
  const body = { code: 'bad_request', message: 'The thread has no finished message to share yet.', recoverable: false };
  await assert.rejects(
    recorded(() => createShare('th'), { status: 400, body }),
    (error) => error.status === 400 && error.message === body.message,
  );
});
