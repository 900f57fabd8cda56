// Tests for the thread list's groups (static/chat/threadlist.js): pinned first, then by date in
// the user's local time. Run with `node --test tests/js/`.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { groupThreads } from '../../static/chat/threadlist.js';

// Local times: the page groups by the user's own calendar, not UTC.
const NOW = new Date(2026, 2, 15, 9, 30); // 15 March 2026, 09:30 local
const at = (year, month, day, hour = 12) => new Date(year, month, day, hour).toISOString();
const thread = (id, updated, pinned = false) => ({ id, title: id, model: 'm', pinned, created_at: updated, updated_at: updated });

test('threads fall into Today, Yesterday, the previous 7 and 30 days, then months', () => {
  const threads = [
    thread('this morning', at(2026, 2, 15, 0)),
    thread('last night', at(2026, 2, 14, 23)),
    thread('yesterday noon', at(2026, 2, 14)),
    thread('last week', at(2026, 2, 8)),
    thread('two weeks ago', at(2026, 2, 1)),
    thread('february', at(2026, 1, 10)),
    thread('january', at(2026, 0, 31)),
    thread('last year', at(2025, 11, 24)),
  ];
  const groups = groupThreads(threads, NOW);
  assert.deepEqual(groups.map((g) => [g.label, g.threads.map((t) => t.id)]), [
    ['Today', ['this morning']],
    ['Yesterday', ['last night', 'yesterday noon']],
    ['Previous 7 days', ['last week']],
    ['Previous 30 days', ['two weeks ago']],
    ['February 2026', ['february']],
    ['January 2026', ['january']],
    ['December 2025', ['last year']],
  ]);
});

test('a day starts at local midnight, whatever the UTC date', () => {
  const groups = groupThreads([thread('just after midnight', new Date(2026, 2, 15, 0, 1).toISOString()), thread('just before', new Date(2026, 2, 14, 23, 59).toISOString())], NOW);
  assert.deepEqual(groups.map((g) => g.label), ['Today', 'Yesterday']);
});

test('pinned threads come first in their own group, whatever their date', () => {
  const threads = [thread('new', at(2026, 2, 15)), thread('old pinned', at(2024, 5, 1), true), thread('older', at(2026, 2, 1)), thread('pinned today', at(2026, 2, 15), true)];
  const groups = groupThreads(threads, NOW);
  assert.deepEqual(groups.map((g) => [g.key, g.threads.map((t) => t.id)]), [
    ['pinned', ['old pinned', 'pinned today']],
    ['today', ['new']],
    ['month', ['older']],
  ]);
});

test('a thread from the future (a clock ahead) is today, and no thread makes no group', () => {
  assert.deepEqual(groupThreads([thread('ahead', at(2026, 2, 16))], NOW).map((g) => g.label), ['Today']);
  assert.deepEqual(groupThreads([], NOW), []);
});
