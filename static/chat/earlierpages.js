/**
 * The open thread's earlier messages: the cursor to the page before the oldest one shown, and
 * what loads it (the "Load earlier messages" button, or scrolling near the top). A thread
 * opens with its newest page; this module keeps the cursor that page gave.
 */

// How close to the top (px) of the history starts loading older messages.
const LOAD_OLDER_AT = 150;

/**
 * Wire the earlier pages of the thread view under `root`.
 * @param {ParentNode} root
 * @param {object} options
 * @param {(cursorUrl: string) => Promise<{previous: string|null, results?: object[]}>} options.load
 *   the open thread's page at that cursor
 * @param {(messages: object[]) => void} options.onPage  put a loaded page's messages above
 * @param {import('./notices.js').Notices} options.notices
 * @returns {{reset(): void, newest(previous: string|null): void, path(previous: string|null): void}}
 */
export function createEarlierPages(root, { load, onPage, notices }) {
  const button = root.querySelector('[data-action="load-earlier"]');
  const scroller = root.querySelector('[data-scroller]');
  // `known`: whether any page has told the cursor yet.
  let older = { known: false, url: null, loading: false };
  // Bumped by reset(): a page that comes back for the previous thread is dropped.
  let epoch = 0;

  function sync() {
    button.hidden = !older.url;
  }

  async function loadEarlier() {
    if (!older.url || older.loading) return;
    const mine = epoch;
    older.loading = true;
    button.disabled = true;
    try {
      const page = await load(older.url);
      if (mine !== epoch) return;
      older = { known: true, url: page.previous, loading: false };
      onPage(page.results ?? []);
    } catch (error) {
      if (mine === epoch) notices.failed(error, 'Could not load earlier messages', { retry: loadEarlier });
    } finally {
      if (mine === epoch) {
        older.loading = false;
        button.disabled = false;
        sync();
      }
    }
  }

  button.addEventListener('click', loadEarlier);
  scroller.addEventListener('scroll', () => {
    if (scroller.scrollTop < LOAD_OLDER_AT && older.url) loadEarlier();
  }, { passive: true });

  return {
    /** Another thread (or none) is open: no cursor until its newest page tells one. */
    reset() {
      epoch += 1;
      older = { known: false, url: null, loading: false };
      sync();
    },
    /** The cursor the thread's newest page gave (null: nothing earlier), unless one is known. */
    newest(previous) {
      if (!older.known) older = { known: true, url: previous, loading: false };
      sync();
    },
    /**
     * The thread shows another branch (a switch), read again from its newest page: the
     * cursor is that page's, whatever was known before (it led into the old path, or said
     * nothing was earlier), and a page of the old path still loading is dropped.
     */
    path(previous) {
      epoch += 1;
      older = { known: true, url: previous ?? null, loading: false };
      button.disabled = false;
      sync();
    },
  };
}
