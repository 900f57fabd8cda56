// Tests for the page's finish (issue 24): the theme's rules (static/chat/theme.js, a classic
// script, run here in a sandbox), one wording per refusal (notices.js), and which user
// messages fold (protocol.js). Run with `node --test tests/js/`.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import vm from 'node:vm';

import { isLongMessage } from '../../static/chat/protocol.js';
import { describeFailure, describeTooLong } from '../../static/chat/notices.js';

const THEME = readFileSync(new URL('../../static/chat/theme.js', import.meta.url), 'utf8');

/** theme.js run on a page whose system prefers `system`, with `stored` in localStorage. */
function themePage({ system = 'light', stored = null, accountChoice } = {}) {
  const storage = new Map(stored ? [['chat-theme', stored]] : []);
  const listeners = {};
  const root = { dataset: accountChoice ? { themeChoice: accountChoice } : {} };
  const media = { matches: system === 'dark', addEventListener: (type, fn) => { listeners.media = fn; } };
  const sandbox = {
    document: { documentElement: root, querySelectorAll: () => [], addEventListener() {} },
    localStorage: {
      getItem: (key) => storage.get(key) ?? null,
      setItem: (key, value) => storage.set(key, String(value)),
      removeItem: (key) => storage.delete(key),
    },
    matchMedia: () => media,
    addEventListener() {},
  };
  sandbox.globalThis = sandbox;
  vm.runInNewContext(THEME, sandbox);
  return { root, storage, theme: sandbox.chatTheme, systemChanges: (dark) => { media.matches = dark; listeners.media(); } };
}

test('the page follows the system theme until the toggle chooses, and follows it live', () => {
  const page = themePage({ system: 'dark' });
  assert.equal(page.root.dataset.theme, 'dark');
  page.systemChanges(false);
  assert.equal(page.root.dataset.theme, 'light');
  assert.equal(page.storage.size, 0);
});

test('the toggle stores the other theme, and toggling back forgets it (the system rules again)', () => {
  const page = themePage({ system: 'light' });
  assert.equal(page.theme.toggle(), 'dark');
  assert.equal(page.storage.get('chat-theme'), 'dark');
  page.systemChanges(false);
  assert.equal(page.root.dataset.theme, 'dark', 'a choice made here outlives the system');
  assert.equal(page.theme.toggle(), 'light');
  assert.equal(page.storage.has('chat-theme'), false);
});

test("this browser's choice beats the account's, which beats the system's", () => {
  assert.equal(themePage({ system: 'light', accountChoice: 'dark' }).root.dataset.theme, 'dark');
  assert.equal(themePage({ system: 'light', accountChoice: 'system' }).root.dataset.theme, 'light');
  assert.equal(themePage({ system: 'dark', accountChoice: 'dark', stored: 'light' }).root.dataset.theme, 'light');
  assert.equal(themePage({ stored: 'purple' }).root.dataset.theme, 'light', 'nonsense stored is ignored');
  const { theme } = themePage();
  assert.equal(theme.resolveTheme('system', true), 'dark');
  assert.equal(theme.nextChoice('dark', 'light'), null);
  assert.equal(theme.nextChoice('light', 'light'), 'dark');
});

test('a refusal has one sentence, from its code, with the server’s reason', () => {
  const rate = { code: 'rate_limited', message: 'At most 3 replies at once; wait for one to end.', recoverable: true };
  assert.equal(describeFailure(rate), 'Rate limited: At most 3 replies at once; wait for one to end.');
  assert.equal(describeFailure({ code: 'busy' }), 'Not sent: A reply is already being written in this thread; wait for it or press Stop.');
  assert.equal(describeFailure({ code: 'quota_exceeded' }), "Not sent: Today's token budget is spent; it renews at midnight UTC.");
  assert.match(describeFailure({ code: 'interrupted', message: 'x' }), /^Interrupted: /);
  assert.equal(describeTooLong(16001, 16000), 'Not sent: The message is 16001 characters; the limit is 16000.');
});

test('a user message folds past 1,500 characters or 20 lines', () => {
  assert.equal(isLongMessage('x'.repeat(1500)), false);
  assert.equal(isLongMessage('x'.repeat(1501)), true);
  assert.equal(isLongMessage(Array(20).fill('line').join('\n')), false);
  assert.equal(isLongMessage(Array(21).fill('line').join('\n')), true);
});
