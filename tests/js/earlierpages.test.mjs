// The "Load earlier" cursor of static/chat/earlierpages.js, on jsdom: after a branch switch it
// is the new path's (its newest page's `previous`), and a page of the old path still loading
// is dropped. Run with `node --test tests/js/`.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { JSDOM } from 'jsdom';

import { createEarlierPages } from '../../static/chat/earlierpages.js';

const { window } = new JSDOM('<!doctype html><html><body></body></html>');

/** The thread view's earlier pages, with `pages` (cursor -> page, or a promise of one). */
function earlierPages(pages) {
  const root = window.document.createElement('div');
  root.innerHTML = '<button data-action="load-earlier" hidden></button><div data-scroller></div>';
  const loaded = [];
  const shown = [];
  const earlier = createEarlierPages(root, {
    load: async (cursor) => {
      loaded.push(cursor);
      return pages[cursor];
    },
    onPage: (messages) => shown.push(...messages.map((m) => m.id)),
    notices: { failed: (error) => assert.fail(error) },
  });
  const button = root.querySelector('[data-action="load-earlier"]');
  return { earlier, button, loaded, shown };
}

const settled = () => new Promise((resolve) => setTimeout(resolve, 0));

test('after a switch the cursor is the new path\'s, even when the old one had nothing earlier', async () => {
  const { earlier, button, loaded, shown } = earlierPages({
    'old-1': { previous: null, results: [{ id: 'o1' }] },
    'new-1': { previous: 'new-2', results: [{ id: 'n2' }] },
  });
  earlier.newest('old-1');
  button.click();
  await settled();
  assert.deepEqual([loaded, shown, button.hidden], [['old-1'], ['o1'], true], 'the old path, all read');

  earlier.path('new-1'); // another branch shown: its newest page's cursor
  assert.equal(button.hidden, false);
  earlier.newest('stale'); // a late newest page of before changes nothing now
  button.click();
  await settled();
  assert.deepEqual(loaded, ['old-1', 'new-1']);
  assert.deepEqual(shown, ['o1', 'n2']);
  assert.equal(button.hidden, false, 'the new path has more');
});

test('a page of the old path that comes back after the switch is dropped', async () => {
  let answer;
  const { earlier, button, loaded, shown } = earlierPages({
    'old-1': new Promise((resolve) => {
      answer = resolve;
    }),
    'new-1': { previous: null, results: [{ id: 'n1' }] },
  });
  earlier.newest('old-1');
  button.click(); // loading the old path's earlier page...
  earlier.path('new-1'); // ...when the branch changes
  answer({ previous: 'old-2', results: [{ id: 'o1' }] });
  await settled();
  assert.deepEqual(shown, [], 'nothing of the old path shown');
  assert.equal(button.disabled, false);
  button.click();
  await settled();
  assert.deepEqual(loaded, ['old-1', 'new-1']);
  assert.deepEqual(shown, ['n1']);
  assert.equal(button.hidden, true);
});

test('a switch to a path with nothing earlier hides the button', () => {
  const { earlier, button } = earlierPages({});
  earlier.newest('old-1');
  assert.equal(button.hidden, false);
  earlier.path(null);
  assert.equal(button.hidden, true);
});
