// Tests for static/chat/notices.js's sentences: run with `node --test tests/js/`.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { describeRequestError } from '../../static/chat/notices.js';

test("a server's reason is quoted once, ending with one full stop", () => {
  const refused = Object.assign(new Error('There is no model x available to you.'), { status: 400 });
  assert.equal(
    describeRequestError(refused, 'Could not switch the model'),
    'Could not switch the model: There is no model x available to you.',
  );
  const bare = Object.assign(new Error('no such thread'), { status: 404 });
  assert.equal(describeRequestError(bare, 'Could not load'), 'Could not load: no such thread.');
  assert.equal(describeRequestError(new Error('x'), 'Could not load'), 'Could not load: network problem.');
});
