/**
 * Chat protocol reducer: server frames in, thread state out. No DOM, no globals, so it
 * runs under node's test runner exactly as in the browser.
 *
 * The state is mutated in place and every call reports what changed: streaming applies
 * one frame per few characters, and copying a long thread per frame would cost more
 * than rendering it.
 *
 * @typedef {{code: string, message: string, recoverable?: boolean}} ErrorInfo
 * @typedef {{rating: 'up'|'down', tags: string[], comment: string, updated_at: string}} Feedback
 * @typedef {{id: string, name: string, mime_type: string, size: number,
 *   kind: 'image'|'text'|'document', url: string}} Attachment  a file sent with a user message
 * @typedef {{totalTokens: number, elapsedSeconds: number,
 *   throughputTokensPerSec: number, timeToFirstTokenMs: number}} Metrics
 * @typedef {object} ChatMessage
 * @property {string} id          server id; the client_id for an optimistic message
 * @property {'user'|'assistant'|'system'} role
 * @property {string} content
 * @property {'pending'|'streaming'|'complete'|'cancelled'|'error'|'interrupted'} status
 * @property {string|null} client_id
 * @property {string|null} created_at
 * @property {string|null} [model]  the model that wrote a reply (its `start` frame's, then its object's)
 * @property {Feedback|null} [feedback]  the owner's rating of a reply, or null
 * @property {Attachment[]} [attachments]  the files a user message carries (none: empty)
 * @property {number} [history_left_out]  earlier messages of the thread not sent to the model
 *   for this reply, its context window being full (0: none)
 * @property {Metrics|null} [metrics]
 * @property {ErrorInfo|null} [error]
 * @property {boolean} [local]    true until the server has persisted it
 * @property {boolean} [superseded] hidden: a regenerate or edit in flight replaces it
 * @property {number} [lastSeq]   seq of the last applied frame; only on replies followed live
 * @property {boolean} [truncated] the provider cut the reply at its token limit: `continue` extends it
 * @property {string|null} [parent_id]  the message it follows in the thread's tree (null: the first)
 * @property {{index: number, count: number, ids: string[]}} [siblings]  the versions at its
 *   place (an edit or a regenerate adds one), itself included, oldest first
 * @property {number} rev         bumped whenever content is replaced rather than appended
 * @typedef {object} ThreadState
 * @property {ChatMessage[]} messages  oldest first
 * @property {Map<string, ChatMessage>} byId
 * @property {number} readyCount
 * @property {boolean} resyncing      a gap was reported and its `ready` has not come yet
 * @property {number} framesSinceHeartbeat  reply frames applied since the last heartbeat
 * @property {{clientId: string|null, superseded: string[], continuing?: string}|null} awaiting
 *   a regenerate, edit or continue sent and not yet answered: the composer waits, the
 *   messages it replaces are hidden (`continuing`: the reply a continue extends)
 * @typedef {object} FrameResult
 * @property {string[]} changed       ids of messages to (re)render
 * @property {{from: string, to: string}[]} renamed  optimistic ids replaced by server ids
 * @property {string[]} failed        optimistic messages the server refused
 * @property {boolean} gap            caller should send {"command":"resync"}
 * @property {boolean} stale          caller should refetch messages and merge them
 * @property {boolean} duplicate      the frame was already applied
 * @property {ErrorInfo|null} notice  a transient error to show the user
 * @property {string[]} removed       messages no longer shown: another branch now (edit, regenerate, a switch)
 * @property {object|null} thread     a thread made or changed: {id, title, model, active_leaf, created_at, updated_at}
 * @property {string|null} deleted    the id of a thread deleted (this one, or another of the user's)
 */

/** The statuses of a message that has ended: the page's one list of them. */
export const TERMINAL_STATUSES = Object.freeze(['complete', 'cancelled', 'error', 'interrupted']);
const TERMINAL = new Set(TERMINAL_STATUSES);
// Errors without message_id that answer a `start`: the optimistic message they refuse
// must not stay "pending" forever. `interrupted` is a draining server's refusal, and
// `quota_exceeded` a spent budget's (chat/generation.py `_begin`).
const START_REFUSALS = new Set(['busy', 'too_large', 'rate_limited', 'bad_request', 'quota_exceeded', 'interrupted']);
// Whether trying again as it is can help, for errors that do not say (`recoverable`): a
// reply saved with an error carries only its code, and so do the client's own errors.
const RECOVERABLE_CODES = new Set([
  'network', 'timeout', 'provider_error', 'internal', 'interrupted', 'rate_limited', 'busy', 'too_many_sockets',
]);
// The server's title rule (chat/services.py `title_from_text`): whitespace as Python's
// str.split() sees it, which is not quite JS's \s.
const TITLE_CHARS = 60;
const PY_WHITESPACE = /[\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/;

// A user message longer than this is shown folded, with "Show more" (a pasted log or file
// would otherwise push the thread off the screen).
const FOLD_CHARS = 1500;
const FOLD_LINES = 20;

/**
 * Whether a user message is long enough to be shown folded.
 * @param {string} text
 * @returns {boolean}
 */
export function isLongMessage(text) {
  if (text.length > FOLD_CHARS) return true;
  let lines = 1;
  for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) {
    lines += 1;
    if (lines > FOLD_LINES) return true;
  }
  return false;
}

/**
 * Whether a message has ended (complete, cancelled, error or interrupted).
 * @param {string} status
 * @returns {boolean}
 */
export function isTerminal(status) {
  return TERMINAL.has(status);
}

/**
 * A thread's title from its first message, cut exactly as the server cuts it: whitespace
 * runs become one space, and past 60 characters it ends on a word boundary with "…".
 * Lengths count code points, as Python's do.
 * @param {string} text
 * @returns {string}
 */
export function titleFromText(text) {
  const line = text.split(PY_WHITESPACE).filter(Boolean).join(' ');
  const chars = Array.from(line);
  if (chars.length <= TITLE_CHARS) return line;
  const head = chars.slice(0, TITLE_CHARS).join('');
  const space = head.lastIndexOf(' ');
  const cut = space === -1 ? head : head.slice(0, space);
  return `${cut.replace(/[ ,.;:]+$/, '')}…`;
}

/** @returns {FrameResult} */
function emptyResult() {
  return {
    changed: [], renamed: [], failed: [], gap: false, stale: false, duplicate: false, notice: null, removed: [], thread: null, deleted: null,
  };
}

/**
 * Normalize a message object from the API or a frame into state form.
 * @param {object} m
 * @returns {ChatMessage}
 */
function normalize(m) {
  return {
    id: String(m.id),
    role: m.role,
    content: m.content ?? '',
    status: m.status ?? 'complete',
    client_id: m.client_id ?? null,
    created_at: m.created_at ?? null,
    model: m.model ?? null,
    metrics: m.metrics ?? null,
    error: m.error ?? null,
    steps: Array.isArray(m.steps) ? m.steps.map(stepOf) : [],
    feedback: feedbackOf(m.feedback),
    history_left_out: leftOut(m.history_left_out),
    attachments: attachmentsOf(m.attachments),
    rev: 0,
    parent_id: m.parent_id != null ? String(m.parent_id) : null,
    siblings: siblingsOf(m.siblings, String(m.id)),
    ...(m.truncated === true ? { truncated: true } : {}),
  };
}

/** A message's siblings as the state keeps them: itself alone unless the server says more. */
function siblingsOf(given, id) {
  const ids = Array.isArray(given?.ids) ? given.ids.map(String) : [];
  const index = ids.indexOf(id);
  if (index === -1) return { index: 0, count: 1, ids: [id] };
  return { index, count: ids.length, ids };
}

/**
 * Where a message stands among its versions, as the page shows it ("2/3"), or null when it
 * has none but itself.
 * @param {ChatMessage} msg
 * @returns {{place: string, previous: string|null, next: string|null}|null}
 */
export function branchOf(msg) {
  const s = msg?.siblings;
  if (!s || s.count < 2 || msg.local) return null;
  return {
    place: `${s.index + 1}/${s.count}`,
    previous: s.index > 0 ? s.ids[s.index - 1] : null,
    next: s.index < s.count - 1 ? s.ids[s.index + 1] : null,
  };
}

/** A feedback object as the state keeps it: null unless it has a rating. */
function feedbackOf(f) {
  if (!f || (f.rating !== 'up' && f.rating !== 'down')) return null;
  return {
    rating: f.rating, tags: Array.isArray(f.tags) ? f.tags.map(String) : [], comment: f.comment ?? '', updated_at: f.updated_at ?? null,
  };
}

/** A message's attachments as the state keeps them: each with an id, the rest as sent. */
function attachmentsOf(list) {
  if (!Array.isArray(list)) return [];
  return list
    .filter((a) => a && a.id != null)
    .map((a) => ({
      id: String(a.id),
      name: String(a.name ?? 'file'),
      mime_type: String(a.mime_type ?? ''),
      size: Number.isFinite(a.size) ? a.size : 0,
      kind: a.kind === 'image' || a.kind === 'document' ? a.kind : 'text',
      url: String(a.url ?? ''),
    }));
}

function leftOut(n) {
  return Number.isInteger(n) && n > 0 ? n : 0;
}

/** A tool step from a `tool` frame or a saved reply's `steps` (docs/protocol.md, "Step"). */
function stepOf(s) {
  const step = {
    call_id: String(s.call_id), name: s.name ?? '', arguments: s.arguments ?? '', status: s.status ?? 'running', offset: s.offset ?? 0,
  };
  if (s.output != null) step.output = s.output;
  if (s.elapsed_ms != null) step.elapsed_ms = s.elapsed_ms;
  return step;
}

/** Put a step in its reply, replacing an earlier frame of the same call. */
function upsertStep(msg, step) {
  const at = msg.steps.findIndex((s) => s.call_id === step.call_id);
  if (at === -1) msg.steps.push(step);
  else msg.steps[at] = step;
}

/**
 * Build the state of one thread from its persisted messages.
 * @param {object[]} [messages] message objects as the API returns them, oldest first
 * @returns {ThreadState}
 */
export function createThreadState(messages = []) {
  const state = {
    messages: [], byId: new Map(), readyCount: 0, resyncing: false, awaiting: null, framesSinceHeartbeat: 0,
  };
  for (const m of messages) {
    const msg = normalize(m);
    state.messages.push(msg);
    state.byId.set(msg.id, msg);
  }
  return state;
}

/**
 * Whether the user should wait: a reply is streaming live or a sent message awaits the server.
 * Replies the database still calls `streaming` but no frame has confirmed do not count, so a
 * reply orphaned by a dead process never locks the composer.
 * @param {ThreadState} state
 * @returns {boolean}
 */
export function isBusy(state) {
  if (state.awaiting) return true;
  return state.messages.some(
    (m) => (m.status === 'streaming' && typeof m.lastSeq === 'number') || (m.local && m.status === 'pending'),
  );
}

function timeOf(m) {
  const t = m.created_at ? Date.parse(m.created_at) : NaN;
  return Number.isNaN(t) ? Infinity : t;
}

// Messages from another tab or a refetch may belong before a reply we already show
// (ordering across channel-layer senders is not guaranteed), so place them by time.
function insertOrdered(state, msg) {
  const t = timeOf(msg);
  let i = state.messages.length;
  while (i > 0 && timeOf(state.messages[i - 1]) > t) i -= 1;
  state.messages.splice(i, 0, msg);
  state.byId.set(msg.id, msg);
}

function replaceAt(state, old, msg, result) {
  const i = state.messages.indexOf(old);
  state.messages[i] = msg;
  state.byId.delete(old.id);
  state.byId.set(msg.id, msg);
  if (old.id !== msg.id) result.renamed.push({ from: old.id, to: msg.id });
}

function findByClientId(state, clientId) {
  if (!clientId) return undefined;
  return state.messages.find((m) => m.client_id === clientId);
}

/**
 * Put one persisted message into the state, replacing the same id or the optimistic
 * message with its client_id. A reply followed live keeps its live text while the database
 * still calls it streaming: the checkpoint is older than the frames already applied.
 */
function upsertPersisted(state, raw, result) {
  const msg = normalize(raw);
  const existing = state.byId.get(msg.id) ?? findByClientId(state, msg.client_id);
  if (!existing) {
    insertOrdered(state, msg);
  } else if (!existing.local && !TERMINAL.has(msg.status) && (TERMINAL.has(existing.status) || typeof existing.lastSeq === 'number')) {
    // Never move a reply backwards: a terminal one stays ended, a live one keeps its frames.
    return;
  } else {
    msg.rev = existing.rev + 1;
    replaceAt(state, existing, msg, result);
  }
  result.changed.push(msg.id);
}

/**
 * Merge persisted messages (a refetch after reconnect, or an older page) into the state.
 * @param {ThreadState} state
 * @param {object[]} messages message objects from the API
 * @returns {FrameResult}
 */
export function mergeMessages(state, messages) {
  const result = emptyResult();
  for (const m of messages) upsertPersisted(state, m, result);
  return result;
}

/**
 * Make the `start` command for a new user message and its optimistic local copy.
 * @param {string} text the message as typed
 * @param {string} [clientId] defaults to a fresh crypto.randomUUID()
 * @param {{model?: string|null, attachments?: Attachment[]}} [options] model: the thread's
 *   model from this reply on (the server refuses one the user may not use with
 *   `bad_request`); attachments: uploads (`POST /api/attachments/`) the message carries
 * @returns {{command: {command: 'start', message: string, client_id: string, model?: string,
 *   attachments?: string[]}, message: ChatMessage}}
 */
export function makeStart(text, clientId = globalThis.crypto.randomUUID(), { model = null, attachments = [] } = {}) {
  const files = attachmentsOf(attachments);
  return {
    command: {
      command: 'start',
      message: text,
      client_id: clientId,
      ...(model ? { model } : {}),
      ...(files.length ? { attachments: files.map((a) => a.id) } : {}),
    },
    message: {
      id: clientId,
      role: 'user',
      content: text,
      status: 'pending',
      client_id: clientId,
      created_at: new Date().toISOString(),
      model: null,
      metrics: null,
      error: null,
      attachments: files,
      local: true,
      rev: 0,
    },
  };
}

/**
 * Show an optimistic message at the end of the thread until the server persists it.
 * @param {ThreadState} state
 * @param {ChatMessage} message from makeStart()
 * @returns {FrameResult}
 */
export function addLocalMessage(state, message) {
  const result = emptyResult();
  state.messages.push(message);
  state.byId.set(message.id, message);
  result.changed.push(message.id);
  return result;
}

/**
 * @typedef {'network'|'timeout'|'server'|'rate_limit'|'limit'|'request'} ErrorKind
 */

function kindOfCode(code) {
  switch (code) {
    case 'network':
      return 'network';
    case 'timeout':
      return 'timeout';
    case 'rate_limited':
      return 'rate_limit';
    case 'too_many_sockets':
      return 'limit';
    case 'provider_error':
    case 'internal':
    case 'interrupted':
      return 'server';
    default:
      return 'request';
  }
}

function kindOfStatus(status) {
  if (!status) return 'network';
  if (status === 429) return 'rate_limit';
  return status >= 500 ? 'server' : 'request';
}

/**
 * The page's one error policy: what kind of failure an error is, and whether trying again as
 * it is can help. Kinds: `network` (the socket or a request could not get through),
 * `timeout`, `server` (the model or the server failed), `rate_limit`, `limit` (too many open
 * sockets), or `request` (the request itself was refused: too large, busy, bad). The
 * server's `recoverable` wins whenever it sent one; only without it does the code (or the
 * HTTP status) decide.
 * @param {{code?: string, status?: number, recoverable?: boolean}} error an error frame, a
 *   message's `error`, a client `error` event, or an Error thrown by api.js (`status`; none:
 *   the network failed)
 * @returns {{kind: ErrorKind, recoverable: boolean}}
 */
export function errorClass({ code, status, recoverable } = {}) {
  // A DOMException's numeric `code` is no error code of ours.
  const named = typeof code === 'string' && code !== '';
  const kind = named ? kindOfCode(code) : kindOfStatus(status);
  if (typeof recoverable === 'boolean') return { kind, recoverable };
  return { kind, recoverable: named ? RECOVERABLE_CODES.has(code) : kind !== 'request' };
}

/**
 * The thread's last message that is shown (not superseded), or undefined.
 * @param {ThreadState} state
 * @returns {ChatMessage|undefined}
 */
export function lastShown(state) {
  for (let i = state.messages.length - 1; i >= 0; i -= 1) {
    if (!state.messages[i].superseded) return state.messages[i];
  }
  return undefined;
}

/**
 * The reply `regenerate` would replace: the last message, when it is a finished reply.
 * @param {ThreadState} state
 * @returns {ChatMessage|undefined}
 */
export function regenerable(state) {
  const last = lastShown(state);
  return last && last.role === 'assistant' && TERMINAL.has(last.status) && !isBusy(state) ? last : undefined;
}

/**
 * The last message `edit` may change (the keyboard's "edit the last message"): the thread's
 * last persisted user message. Any persisted user message shown may be edited (canEdit).
 * @param {ThreadState} state
 * @returns {ChatMessage|undefined}
 */
export function editable(state) {
  if (isBusy(state)) return undefined;
  for (let i = state.messages.length - 1; i >= 0; i -= 1) {
    const m = state.messages[i];
    if (m.role === 'user' && !m.superseded) return m.local ? undefined : m;
  }
  return undefined;
}

/**
 * Whether `edit` may change this message: a persisted user message of the path shown, and no
 * reply running (an edit makes a new branch beside it; the old version is kept).
 * @param {ThreadState} state
 * @param {string} id
 * @returns {boolean}
 */
export function canEdit(state, id) {
  const m = state.byId.get(id);
  return Boolean(m && m.role === 'user' && !m.local && !m.superseded) && !isBusy(state);
}

function supersede(state, ids, clientId, result) {
  for (const id of ids) {
    const m = state.byId.get(id);
    if (!m) continue;
    m.superseded = true;
    result.changed.push(id);
  }
  state.awaiting = { clientId, superseded: ids };
}

// A refused regenerate or edit: show again what it would have replaced.
function unsupersede(state, result) {
  if (!state.awaiting) return;
  for (const id of state.awaiting.superseded) {
    const m = state.byId.get(id);
    if (m?.superseded) {
      m.superseded = false;
      result.changed.push(id);
    }
  }
  state.awaiting = null;
}

/**
 * Ask for a new answer to the last user message beside the last reply (a new branch): hides
 * that reply until the new one's `message` frame takes its place (or a refusal shows it again).
 * @param {ThreadState} state mutated in place
 * @param {string} [clientId] defaults to a fresh crypto.randomUUID()
 * @returns {{command: {command: 'regenerate', client_id: string}|null, result: FrameResult}}
 *   command is null when there is no finished reply to regenerate
 */
export function beginRegenerate(state, clientId = globalThis.crypto.randomUUID()) {
  const result = emptyResult();
  const reply = regenerable(state);
  if (!reply) return { command: null, result };
  supersede(state, [reply.id], clientId, result);
  return { command: { command: 'regenerate', client_id: clientId }, result };
}

/**
 * A new version of a user message of the path shown, answered (a new branch; the server keeps
 * the old one): hides the old message and what follows it and shows the new one as sending,
 * until the server's frames confirm it.
 * @param {ThreadState} state mutated in place
 * @param {string} messageId a persisted user message shown
 * @param {string} text
 * @param {string} [clientId]
 * @returns {{command: {command: 'edit', message_id: string, message: string, client_id: string}|null,
 *   result: FrameResult}} command is null when messageId is not the editable message
 */
export function beginEdit(state, messageId, text, clientId = globalThis.crypto.randomUUID()) {
  const result = emptyResult();
  if (!canEdit(state, messageId)) return { command: null, result };
  const target = state.byId.get(messageId);
  const from = state.messages.indexOf(target);
  const ids = state.messages.slice(from).filter((m) => !m.superseded).map((m) => m.id);
  supersede(state, ids, clientId, result);
  // The server keeps the edited message's files when the command names none (and an empty
  // list would drop them): the command never carries `attachments`; the copy shows them.
  const { message } = makeStart(text, clientId);
  message.attachments = target.attachments ?? [];
  state.messages.push(message);
  state.byId.set(message.id, message);
  result.changed.push(message.id);
  return { command: { command: 'edit', message_id: messageId, message: text, client_id: clientId }, result };
}

/**
 * Ask the thread's last reply, cut by the token limit, to go on: the same message grows, and
 * its frames carry on its `seq` (no new `start`). Whether it was cut is the server's to say
 * (`truncated`); a refusal comes back as an `error` and leaves the reply as it was.
 * @param {ThreadState} state mutated in place
 * @param {string} messageId the thread's last reply, ended `complete`
 * @param {string} [clientId] defaults to a fresh crypto.randomUUID(): sent again, the server
 *   knows the continue as already sent
 * @returns {{command: {command: 'continue', message_id: string, client_id: string}|null,
 *   result: FrameResult}} command is null when messageId is not that reply, or a reply runs
 */
export function beginContinue(state, messageId, clientId = globalThis.crypto.randomUUID()) {
  const result = emptyResult();
  const reply = lastShown(state);
  if (reply?.id !== messageId || reply.role !== 'assistant' || reply.status !== 'complete' || isBusy(state)) {
    return { command: null, result };
  }
  state.awaiting = { clientId, superseded: [], continuing: reply.id };
  return { command: { command: 'continue', message_id: reply.id, client_id: clientId }, result };
}

// Whether frame `seq` of an ended reply continues it: the continue this state awaits, or
// another tab's continue of a truncated reply (its next frame, or a snapshot past its end);
// an ended reply takes no more text otherwise.
function continues(msg, continuing, seq, snapshot = false) {
  if (msg.status !== 'complete') return false;
  if (msg.id !== continuing) {
    if (msg.truncated !== true || typeof seq !== 'number') return false;
    if (typeof msg.lastSeq !== 'number') return snapshot;
    return snapshot ? seq > msg.lastSeq : seq === msg.lastSeq + 1;
  }
  return typeof msg.lastSeq !== 'number' || typeof seq !== 'number' || seq > msg.lastSeq;
}

function reopen(state, msg) {
  if (state.awaiting?.continuing === msg.id) state.awaiting = null;
  msg.status = 'streaming';
  msg.metrics = null;
  delete msg.truncated;
}

/**
 * Send again a message the server refused (rate limit, busy): the same client_id, so if the
 * first attempt did get through the server answers with where things stand, not a copy.
 * @param {ThreadState} state mutated in place
 * @param {string} id the optimistic message's id
 * @returns {{command: {command: 'start', message: string, client_id: string,
 *   attachments?: string[]}|null, result: FrameResult}}
 */
export function retryLocalMessage(state, id) {
  const result = emptyResult();
  const msg = state.byId.get(id);
  if (!msg?.local || msg.status !== 'error' || isBusy(state)) return { command: null, result };
  msg.status = 'pending';
  msg.error = null;
  result.changed.push(id);
  const files = (msg.attachments ?? []).map((a) => a.id);
  const command = { command: 'start', message: msg.content, client_id: msg.client_id };
  if (files.length) command.attachments = files;
  return { command, result };
}

// Take messages off the path shown (another branch now): never our own unsent ones.
function drop(state, doomed, result) {
  if (!doomed.length) return;
  const ids = new Set(doomed.map((m) => m.id));
  state.messages = state.messages.filter((m) => !ids.has(m.id));
  for (const id of ids) {
    state.byId.delete(id);
    result.removed.push(id);
    result.changed.push(id);
  }
  if (state.awaiting) {
    state.awaiting.superseded = state.awaiting.superseded.filter((id) => !ids.has(id));
  }
}

// A saved message goes right after its parent: what is shown after that parent is another
// branch now (an edit's new version, a regenerated reply) and leaves the screen.
function placeAfterParent(state, raw, result) {
  const id = String(raw.id);
  if (state.byId.has(id) || !('parent_id' in raw)) return;
  const parent = raw.parent_id == null ? null : String(raw.parent_id);
  const at = parent === null ? -1 : state.messages.findIndex((m) => m.id === parent);
  if (parent !== null && at === -1) return; // its parent is not loaded: nothing to judge by
  const mine = raw.client_id != null ? String(raw.client_id) : null;
  drop(state, state.messages.slice(at + 1).filter((m) => !m.local && (mine === null || m.client_id !== mine)), result);
}

/**
 * Show the thread's path as the server has it now (after a branch switch, here or in another
 * tab, or a refetch after a reconnect): `messages` is its newest page, oldest first. Messages
 * shown that are not on it leave: all of them (`whole`), or only those within the page's time
 * span (older pages loaded before stay). Our own unsent messages stay.
 * @param {ThreadState} state mutated in place
 * @param {object[]} messages message objects from the API
 * @param {{whole?: boolean}} [options]
 * @returns {FrameResult}
 */
export function setPath(state, messages, { whole = false } = {}) {
  const result = emptyResult();
  const keep = new Set(messages.map((m) => String(m.id)));
  // Without `whole`, only what the page covers is judged: a message saved after the page was
  // read (its frame came first) is newer than the page's newest, and stays.
  const from = messages.length ? timeOf(normalize(messages[0])) : Infinity;
  const to = messages.length ? timeOf(normalize(messages.at(-1))) : -Infinity;
  const judged = (m) => whole || (timeOf(m) >= from && timeOf(m) <= to);
  drop(state, state.messages.filter((m) => !m.local && !keep.has(m.id) && judged(m)), result);
  for (const m of messages) upsertPersisted(state, m, result);
  return result;
}

// A gap is reported once per resync: every later frame of the reply would report it again.
function reportGap(state, result) {
  if (!state.resyncing) {
    state.resyncing = true;
    result.gap = true;
  }
  return result;
}

/**
 * Check a frame's seq against the reply it belongs to.
 * @returns {'apply'|'duplicate'|'gap'}
 */
function sequence(msg, seq) {
  if (typeof seq !== 'number') return 'apply';
  if (typeof msg.lastSeq !== 'number') return 'gap';
  if (seq <= msg.lastSeq) return 'duplicate';
  return seq === msg.lastSeq + 1 ? 'apply' : 'gap';
}

function applyReady(state, frame, result) {
  state.resyncing = false;
  const continuing = state.awaiting?.continuing;
  // A command sent on a socket that died may be lost; the refetch that a second `ready`
  // asks for shows what the server did with it.
  if (state.awaiting) {
    unsupersede(state, result);
    result.stale = true;
  }
  state.readyCount += 1;
  // After a reconnect or resync, frames sent while we were away (user messages from other
  // tabs, whole replies) are only in the database.
  if (state.readyCount > 1) result.stale = true;
  const active = frame.active;
  for (const m of state.messages) {
    if (m.status === 'streaming' && m.id !== active?.message_id) result.stale = true;
  }
  if (!active) return result;
  let msg = state.byId.get(String(active.message_id));
  if (!msg) {
    // The reply started after our history was fetched, so its user message is missing too.
    result.stale = true;
    msg = normalize({ id: active.message_id, role: 'assistant', status: 'streaming', created_at: frame.ts ? new Date(frame.ts).toISOString() : null });
    insertOrdered(state, msg);
  } else if (TERMINAL.has(msg.status)) {
    // Only this state's continue makes an ended reply active again.
    if (!continues(msg, continuing, active.seq, true)) return result;
    reopen(state, msg);
  } else if (typeof msg.lastSeq === 'number' && msg.lastSeq >= active.seq) {
    // Frames we already applied are as new as this snapshot; keep them.
    return result;
  }
  msg.content = active.content ?? '';
  msg.steps = Array.isArray(active.steps) ? active.steps.map(stepOf) : [];
  msg.lastSeq = active.seq;
  msg.status = 'streaming';
  msg.rev += 1;
  result.changed.push(msg.id);
  return result;
}

function applyStart(state, frame, result) {
  const id = String(frame.message_id);
  if (state.awaiting) state.awaiting = null;
  const existing = state.byId.get(id);
  if (existing) {
    if (typeof existing.lastSeq === 'number' || TERMINAL.has(existing.status)) {
      result.duplicate = true;
      return result;
    }
    existing.lastSeq = 0;
    existing.status = 'streaming';
    existing.model = frame.model ?? existing.model;
    existing.history_left_out = leftOut(frame.history_left_out) || existing.history_left_out || 0;
    result.changed.push(id);
    return result;
  }
  const msg = normalize({
    id,
    role: 'assistant',
    status: 'streaming',
    model: frame.model,
    history_left_out: frame.history_left_out,
    created_at: new Date(frame.ts ?? Date.now()).toISOString(),
  });
  msg.lastSeq = 0;
  state.messages.push(msg);
  state.byId.set(id, msg);
  result.changed.push(id);
  return result;
}

function applyToken(state, frame, result) {
  return applyInReply(state, frame, result, (msg) => {
    msg.content += frame.token ?? '';
  });
}

function applyTool(state, frame, result) {
  return applyInReply(state, frame, result, (msg) => upsertStep(msg, stepOf(frame)));
}

// A frame inside a streaming reply (a token or a tool step), applied once and in seq order.
function applyInReply(state, frame, result, apply) {
  const msg = state.byId.get(String(frame.message_id));
  if (!msg) return reportGap(state, result);
  if (TERMINAL.has(msg.status)) {
    if (!continues(msg, state.awaiting?.continuing, frame.seq)) {
      result.duplicate = true;
      return result;
    }
    reopen(state, msg);
  }
  const verdict = sequence(msg, frame.seq);
  if (verdict === 'duplicate') result.duplicate = true;
  if (verdict === 'gap') return reportGap(state, result);
  if (verdict !== 'apply') return result;
  apply(msg);
  msg.lastSeq = frame.seq;
  state.framesSinceHeartbeat += 1;
  result.changed.push(msg.id);
  return result;
}

// The server's heartbeat says where the thread's reply stands. A reply still streaming here
// that the server no longer runs (or that moved on while nothing arrived) lost frames the
// layer dropped, possibly its last: resync rather than spin forever. Frames still on their
// way are no reason: the check waits for a quiet heartbeat interval.
function applyHeartbeat(state, frame, result) {
  const quiet = state.framesSinceHeartbeat === 0;
  state.framesSinceHeartbeat = 0;
  if (!('active' in frame) || state.resyncing) return result;
  const active = frame.active;
  for (const msg of state.messages) {
    if (msg.status !== 'streaming' || typeof msg.lastSeq !== 'number') continue;
    const ended = !active || String(active.message_id) !== msg.id;
    if (ended || (quiet && active.seq > msg.lastSeq)) return reportGap(state, result);
  }
  return result;
}

// `complete` and reply `error` both end a reply. Ending one whose text has a gap would
// freeze the missing text, so it waits for the resync (whose refetch brings the final text).
function applyEnd(state, frame, result, end) {
  const msg = state.byId.get(String(frame.message_id));
  if (!msg) {
    result.stale = true;
    return result;
  }
  if (TERMINAL.has(msg.status)) {
    result.duplicate = true;
    return result;
  }
  const verdict = sequence(msg, frame.seq);
  if (verdict === 'duplicate') {
    result.duplicate = true;
    return result;
  }
  if (verdict === 'gap') {
    if (typeof msg.lastSeq === 'number') return reportGap(state, result);
    // Known only from the database, never followed live: end it now and let the caller
    // refetch the final text.
    result.stale = true;
  }
  if (typeof frame.seq === 'number') msg.lastSeq = frame.seq;
  end(msg);
  result.changed.push(msg.id);
  return result;
}

function applyError(state, frame, result) {
  // `recoverable` is kept only as the server sent it: errorClass() guesses when it is absent.
  const info = { code: frame.code ?? 'internal', message: frame.message ?? 'Something went wrong.' };
  if (typeof frame.recoverable === 'boolean') info.recoverable = frame.recoverable;
  if (frame.message_id != null) {
    return applyEnd(state, frame, result, (msg) => {
      // The database calls a reply whose process died `interrupted`; match it so a reload
      // shows the same status.
      msg.status = info.code === 'interrupted' ? 'interrupted' : 'error';
      msg.error = { ...info };
    });
  }
  result.notice = info;
  if (START_REFUSALS.has(info.code)) {
    unsupersede(state, result);
    const refused = state.messages.find((m) => m.local && m.status === 'pending');
    if (refused) {
      refused.status = 'error';
      refused.error = { ...info };
      result.failed.push(refused.id);
      result.changed.push(refused.id);
    }
  }
  return result;
}

/**
 * Set a reply's feedback: from a `feedback` frame (any tab, the API or ChatKit changed it) or
 * from the answer to this page's own rating (api.js putFeedback).
 * @param {ThreadState} state mutated in place
 * @param {string} messageId
 * @param {object|null} feedback a feedback object; null (or one without a rating): removed
 * @returns {FrameResult} changed: the reply, when it is in the state and its feedback differs
 */
export function setFeedback(state, messageId, feedback) {
  const result = emptyResult();
  const msg = state.byId.get(String(messageId));
  if (!msg) return result;
  const next = feedbackOf(feedback);
  const before = msg.feedback ?? null;
  // Frames of one thread arrive in order, but this page's own PUT answer and the frame of an
  // earlier PUT (another tab's) can cross: an older rating never replaces a newer one.
  if (next && before?.updated_at && next.updated_at && Date.parse(next.updated_at) < Date.parse(before.updated_at)) {
    return result;
  }
  if (JSON.stringify(next) === JSON.stringify(before)) return result;
  msg.feedback = next;
  result.changed.push(msg.id);
  return result;
}

/**
 * Apply one server frame to the thread state.
 * @param {ThreadState} state mutated in place
 * @param {object} frame a parsed server frame (docs/protocol.md)
 * @returns {FrameResult} what changed and what the caller must do next
 */
export function applyFrame(state, frame) {
  const result = emptyResult();
  if (!frame || typeof frame !== 'object') return result;
  switch (frame.type) {
    case 'ready':
      return applyReady(state, frame, result);
    case 'message':
      if (frame.message && frame.message.id != null) {
        placeAfterParent(state, frame.message, result);
        upsertPersisted(state, frame.message, result);
      }
      return result;
    case 'start':
      return applyStart(state, frame, result);
    case 'token':
      return applyToken(state, frame, result);
    case 'tool':
      return applyTool(state, frame, result);
    case 'complete':
      return applyEnd(state, frame, result, (msg) => {
        msg.status = frame.status === 'cancelled' ? 'cancelled' : 'complete';
        msg.metrics = frame.metrics ?? null;
        if (frame.truncated === true) msg.truncated = true;
      });
    case 'error':
      return applyError(state, frame, result);
    case 'thread':
      if (frame.thread && frame.thread.id != null) result.thread = frame.thread;
      return result;
    case 'thread_deleted':
      if (frame.thread_id != null) result.deleted = String(frame.thread_id);
      return result;
    case 'heartbeat':
      return applyHeartbeat(state, frame, result);
    case 'feedback':
      return frame.message_id != null ? setFeedback(state, frame.message_id, frame.feedback ?? null) : result;
    default:
      // frame types this client does not know change nothing.
      return result;
  }
}
