/**
 * Fetch helpers for the REST API (session cookie + CSRF header). Every helper throws an
 * Error with `status` (and the parsed body as `body`) when the answer is not 2xx.
 *
 * @typedef {{id: string, title: string, created_at: string, updated_at: string}} Thread
 * @typedef {{next: string|null, previous: string|null, results: any[]}} Page
 */

function csrfToken() {
  return document.querySelector('meta[name="csrf-token"]')?.getAttribute('content') ?? '';
}

// DRF builds pagination links from the request's scheme and host; behind a TLS proxy
// that is not configured for it they come back as http:// and the browser blocks them.
// Keeping only path and query makes them same-origin by construction.
function sameOrigin(url) {
  const parsed = new URL(url, window.location.href);
  return parsed.pathname + parsed.search;
}

async function request(method, url, body) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET') headers['X-CSRFToken'] = csrfToken();
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(url, {
    method,
    headers,
    credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!response.ok) {
    const detail = data && typeof data === 'object' && typeof data.detail === 'string' ? data.detail : response.statusText;
    const error = new Error(detail || `Request failed (${response.status})`);
    error.status = response.status;
    error.body = data;
    throw error;
  }
  return data;
}

/**
 * A page of the user's threads, newest first; with `search`, only threads whose title or
 * messages contain it.
 * @param {{search?: string, cursorUrl?: string|null}} [options] cursorUrl: a `next` link
 * @returns {Promise<Page>}
 */
export function listThreads({ search = '', cursorUrl = null } = {}) {
  if (cursorUrl) return request('GET', sameOrigin(cursorUrl));
  const query = search ? `?search=${encodeURIComponent(search)}` : '';
  return request('GET', `/api/threads/${query}`);
}

/**
 * Where a thread's export downloads from.
 * @param {string} id
 * @param {'markdown'|'json'} format
 * @returns {string}
 */
export function exportUrl(id, format) {
  return `/api/threads/${encodeURIComponent(id)}/export/?format=${format}`;
}

/**
 * Create a thread.
 * @param {string} [title]
 * @returns {Promise<Thread>}
 */
export function createThread(title) {
  return request('POST', '/api/threads/', title ? { title } : {});
}

/**
 * Rename a thread.
 * @param {string} id
 * @param {string} title
 * @returns {Promise<Thread>}
 */
export function renameThread(id, title) {
  return request('PATCH', `/api/threads/${encodeURIComponent(id)}/`, { title });
}

/**
 * Delete a thread and its messages.
 * @param {string} id
 * @returns {Promise<null>}
 */
export function deleteThread(id) {
  return request('DELETE', `/api/threads/${encodeURIComponent(id)}/`);
}

/**
 * One page of a thread's messages, oldest first within the page. Without a cursor this is
 * the newest page; follow `previous` for older messages.
 * @param {string} threadId
 * @param {string|null} [cursorUrl] a `next`/`previous` link from an earlier page
 * @returns {Promise<Page>}
 */
export function listMessages(threadId, cursorUrl) {
  return request('GET', cursorUrl ? sameOrigin(cursorUrl) : `/api/threads/${encodeURIComponent(threadId)}/messages/`);
}

/**
 * The user's token budget today: `remaining` is null when there is no budget.
 * @returns {Promise<{day: string, budget: number, used: number, reserved: number, remaining: number|null, resets_at: string}>}
 */
export function getUsage() {
  return request('GET', '/api/usage/');
}
