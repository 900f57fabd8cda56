/**
 * Fetch helpers for the REST API: the page's session cookie (+ CSRF header), or a client
 * secret as a Bearer token for pages elsewhere. Every helper throws an Error with `status`
 * (and the parsed body as `body`; the body's `recoverable`, when it has one) when the answer
 * is not 2xx; a request that never got an answer throws without `status`. Nothing here
 * touches the DOM until a request is made, so client.js can use it anywhere.
 *
 * @typedef {{id: string, title: string, model: string, pinned: boolean, created_at: string, updated_at: string}} Thread
 * @typedef {{rating: 'up'|'down', tags: string[], comment: string, updated_at: string}} Feedback
 * @typedef {{next: string|null, previous: string|null, results: any[]}} Page
 * @typedef {{baseUrl?: string, clientSecret?: string}} Auth  baseUrl: the product's origin
 *   when the page is elsewhere; clientSecret: from `POST /api/chatkit/session`
 */

/** The page's CSRF token (its `csrf-token` meta tag), for a session write. */
export function csrfToken() {
  return globalThis.document?.querySelector('meta[name="csrf-token"]')?.getAttribute('content') ?? '';
}

// DRF builds pagination links from the request's scheme and host; behind a TLS proxy
// that is not configured for it they come back as http:// and the browser blocks them.
// Keeping only path and query makes them same-origin by construction.
function pathOf(url, baseUrl) {
  const parsed = new URL(url, baseUrl || globalThis.location.href);
  return parsed.pathname + parsed.search;
}

async function request(method, url, body, { baseUrl = '', clientSecret } = {}) {
  const headers = { Accept: 'application/json' };
  if (clientSecret) headers.Authorization = `Bearer ${clientSecret}`;
  else if (method !== 'GET') headers['X-CSRFToken'] = csrfToken();
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(baseUrl.replace(/\/$/, '') + url, {
    method,
    headers,
    credentials: clientSecret ? 'omit' : 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = parsed(await response.text());
  if (!response.ok) throw refusal(response.status, response.statusText, data);
  return data;
}

function parsed(text) {
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

// The Error every helper throws for an answer that is not 2xx.
function refusal(status, statusText, data) {
  // DRF answers `{detail}`; a refusal as an error frame (chat/errors.py) has `message`.
  const said = data && typeof data === 'object' ? data.detail ?? data.message : null;
  const detail = typeof said === 'string' ? said : statusText;
  const error = new Error(detail || `Request failed (${status})`);
  error.status = status;
  error.body = data;
  // The server's word on retrying wins over any guess (protocol.js errorClass).
  if (typeof data?.recoverable === 'boolean') error.recoverable = data.recoverable;
  return error;
}

/**
 * Upload a file for the composer (`POST /api/attachments/`, multipart field `file`), with
 * progress: XMLHttpRequest, since fetch reports no upload progress. The server decides what
 * the file is; a refusal (413 `too_large`, 400 `bad_request`, 429 `quota_exceeded`) rejects
 * with api.js's Error, its message the server's.
 * @param {Blob & {name?: string}} file
 * @param {{onProgress?: (loaded: number, total: number) => void}} [options]
 * @returns {{done: Promise<import('./protocol.js').Attachment>, abort: () => void}} abort:
 *   stop the upload (done then rejects with an Error named `AbortError`)
 */
export function uploadAttachment(file, { onProgress = () => {} } = {}) {
  const xhr = new XMLHttpRequest();
  const done = new Promise((resolve, reject) => {
    xhr.open('POST', '/api/attachments/');
    xhr.setRequestHeader('Accept', 'application/json');
    xhr.setRequestHeader('X-CSRFToken', csrfToken());
    xhr.upload.addEventListener('progress', (event) => {
      if (event.lengthComputable) onProgress(event.loaded, event.total);
    });
    xhr.addEventListener('load', () => {
      const data = parsed(xhr.responseText);
      if (xhr.status >= 200 && xhr.status < 300) resolve(data);
      else reject(refusal(xhr.status, xhr.statusText, data));
    });
    // No answer at all: the network, or a server that closed the connection on a body it
    // refused before reading it (a 413 the browser never got to read).
    xhr.addEventListener('error', () => reject(new Error('The upload did not get through.')));
    xhr.addEventListener('abort', () => reject(Object.assign(new Error('Upload cancelled.'), { name: 'AbortError' })));
    const form = new FormData();
    form.append('file', file, file.name ?? 'file');
    xhr.send(form);
  });
  return { done, abort: () => xhr.abort() };
}

/**
 * Remove an upload that was never sent (the composer's chip removed).
 * @param {string} id
 * @returns {Promise<null>}
 */
export function deleteAttachment(id) {
  return request('DELETE', `/api/attachments/${encodeURIComponent(id)}/`);
}

/**
 * A page of the user's threads, newest first; with `search`, only threads whose title or
 * messages contain it.
 * @param {{search?: string, cursorUrl?: string|null}} [options] cursorUrl: a `next` link
 * @returns {Promise<Page>}
 */
export function listThreads({ search = '', cursorUrl = null } = {}) {
  if (cursorUrl) return request('GET', pathOf(cursorUrl));
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
 * @param {{title?: string, model?: string|null}} [fields] model: the thread's (and the user's
 *   choice for new threads); default: the one they last chose
 * @returns {Promise<Thread>}
 */
export function createThread({ title, model } = {}) {
  return request('POST', '/api/threads/', { ...(title ? { title } : {}), ...(model ? { model } : {}) });
}

/**
 * Change the model a thread's next replies use (also the user's choice for new threads).
 * Refused with 400 for a model the user may not use; the thread is then unchanged.
 * @param {string} id
 * @param {string} model
 * @returns {Promise<Thread>}
 */
export function setThreadModel(id, model) {
  return request('PATCH', `/api/threads/${encodeURIComponent(id)}/`, { model });
}

/**
 * Show another branch of a thread: its path runs to `messageId` (a message of the thread),
 * then on through its latest descendants. Refused with 409 (`busy`) while a reply runs on the
 * thread, 400 for a message that is not the thread's; the thread is then unchanged.
 * @param {string} id
 * @param {string} messageId
 * @param {Auth} [auth]
 * @returns {Promise<Thread>} the thread, `active_leaf` the leaf the switch resolved to
 */
export function setActiveLeaf(id, messageId, { baseUrl = '', clientSecret } = {}) {
  return request('PATCH', `/api/threads/${encodeURIComponent(id)}/`, { active_leaf: messageId }, { baseUrl, clientSecret });
}

/**
 * One thread of the user's.
 * @param {string} id
 * @returns {Promise<Thread>}
 */
export function getThread(id) {
  return request('GET', `/api/threads/${encodeURIComponent(id)}/`);
}

/**
 * Rate one of the user's finished replies, replacing the rating before; `rating: null`
 * removes it. At most 10 tags of 1 to 40 characters, a comment of at most 2000.
 * @param {string} messageId
 * @param {{rating: 'up'|'down'|null, tags?: string[], comment?: string}} given
 * @param {Auth} [auth]
 * @returns {Promise<Feedback|null>} the saved feedback; null when removed
 */
export async function putFeedback(messageId, given, { baseUrl = '', clientSecret } = {}) {
  const url = `/api/messages/${encodeURIComponent(messageId)}/feedback/`;
  const saved = await request('PUT', url, given, { baseUrl, clientSecret });
  return saved?.rating ? saved : null;
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
 * Pin a thread (the list shows it first) or unpin it.
 * @param {string} id
 * @param {boolean} pinned
 * @returns {Promise<Thread>}
 */
export function pinThread(id, pinned) {
  return request('PATCH', `/api/threads/${encodeURIComponent(id)}/`, { pinned });
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
 * One page of a thread's messages, oldest first within the page: the page's and client.js's
 * one way to read them. Without a cursor this is the newest page; follow `previous` for
 * older messages.
 * @param {string} threadId
 * @param {{cursorUrl?: string|null} & Auth} [options] cursorUrl: a `next`/`previous` link
 *   from an earlier page
 * @returns {Promise<Page>}
 */
export function listMessages(threadId, { cursorUrl = null, baseUrl = '', clientSecret } = {}) {
  const url = cursorUrl ? pathOf(cursorUrl, baseUrl) : `/api/threads/${encodeURIComponent(threadId)}/messages/`;
  return request('GET', url, undefined, { baseUrl, clientSecret });
}

/**
 * The user's token budget today: `remaining` is null when there is no budget.
 * @returns {Promise<{day: string, budget: number, used: number, reserved: number, remaining: number|null, resets_at: string}>}
 */
export function getUsage() {
  return request('GET', '/api/usage/');
}

/**
 * @typedef {{token: string, url: string, up_to: string, created_at: string,
 *   expires_at: string|null}} Share  a read-only link to a snapshot of a thread
 */

/**
 * The thread's live shares, newest first.
 * @param {string} threadId
 * @returns {Promise<Share[]>}
 */
export function listShares(threadId) {
  return request('GET', `/api/threads/${encodeURIComponent(threadId)}/shares/`);
}

/**
 * Share a thread: a copy, made now, of what it shows up to its last finished message (or
 * `upTo`), readable by anyone with the link; `expiresIn` seconds, or never (null).
 * @param {string} threadId
 * @param {{upTo?: string|null, expiresIn?: number|null}} [options]
 * @returns {Promise<Share>}
 */
export function createShare(threadId, { upTo = null, expiresIn = null } = {}) {
  const body = { ...(upTo ? { up_to: upTo } : {}), ...(expiresIn ? { expires_in: expiresIn } : {}) };
  return request('POST', `/api/threads/${encodeURIComponent(threadId)}/shares/`, body);
}

/**
 * Revoke a share: its link answers 404 from now on.
 * @param {string} token
 * @returns {Promise<null>}
 */
export function revokeShare(token) {
  return request('DELETE', `/api/shares/${encodeURIComponent(token)}/`);
}
