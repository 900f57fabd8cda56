/**
 * One message on screen: its elements (role and the model that wrote a reply, tool steps,
 * text, the files it carries (attachmentview.js), notes, metrics, actions, the reply's
 * rating), built once and then updated in place,
 * touching only what changed. User text only ever reaches the DOM as text nodes; model text
 * goes through richtext.js (markdown sanitized by DOMPurify); tool output is set as text. The
 * feedback panel that opens under a reply is feedback.js's.
 *
 * @typedef {import('./protocol.js').ChatMessage} ChatMessage
 * @typedef {import('./protocol.js').Metrics} Metrics
 * @typedef {object} MessageRecord  a message's elements and what they show
 * @property {HTMLElement} root     the `[data-message-id]` element
 * @property {HTMLElement} content  the `[data-content]` element
 * @property {HTMLButtonElement} edit
 * @property {boolean} editing      its text is being edited in place (messageview.js)
 * @property {HTMLButtonElement} up    `[data-action="feedback-up"]`
 * @property {HTMLButtonElement} down  `[data-action="feedback-down"]`
 * @property {HTMLButtonElement} [continue]  `[data-action="continue"]`: replies only
 * @typedef {object} MessageContext  what a message shows beside its own fields
 * @property {(modelId: string) => string} modelLabel  a model's name, by id
 */
import { buildAttachments } from './attachmentview.js';
import { el } from './dom.js';
import { describeFailure, INTERRUPTED } from './notices.js';
import { branchOf, errorClass, isLongMessage, isTerminal } from './protocol.js';
import { createRichText } from './richtext.js';

const ROLE_LABELS = { user: 'You', assistant: 'Assistant', system: 'System' };
const STATUS_NOTES = {
  cancelled: 'Stopped.',
  interrupted: INTERRUPTED,
};
function button(action, label, ariaLabel) {
  const node = el('button', 'message__action', label);
  node.type = 'button';
  node.dataset.messageAction = action;
  if (ariaLabel) node.setAttribute('aria-label', ariaLabel);
  return node;
}

// Feather's thumbs (MIT, feathericons.com): an icon reads at a glance where an emoji may
// render as a box, and its fill shows the saved rating.
const THUMBS = {
  up: 'M14 9V5a3 3 0 0 0-3-3l-4 9v11h11.28a2 2 0 0 0 2-1.7l1.38-9a2 2 0 0 0-2-2.3zM7 22H4a2 2 0 0 1-2-2v-7a2 2 0 0 1 2-2h3',
  down: 'M10 15v4a3 3 0 0 0 3 3l4-9V2H5.72a2 2 0 0 0-2 1.7l-1.38 9a2 2 0 0 0 2 2.3zm7-13h2.67A2.31 2.31 0 0 1 22 4v7a2.31 2.31 0 0 1-2.33 2H17',
};
const SVG = 'http://www.w3.org/2000/svg';

function thumb(rating) {
  const node = el('button', `message__action message__thumb message__thumb--${rating}`);
  node.type = 'button';
  node.dataset.action = `feedback-${rating}`;
  node.setAttribute('aria-pressed', 'false');
  node.setAttribute('aria-label', rating === 'up' ? 'Good reply' : 'Bad reply');
  node.title = rating === 'up' ? 'Good reply' : 'Bad reply';
  const icon = document.createElementNS(SVG, 'svg');
  icon.setAttribute('viewBox', '0 0 24 24');
  icon.setAttribute('aria-hidden', 'true');
  icon.setAttribute('focusable', 'false');
  const path = document.createElementNS(SVG, 'path');
  path.setAttribute('d', THUMBS[rating]);
  icon.append(path);
  node.append(icon);
  return node;
}

/**
 * The note on a reply whose history was cut to fit the model's context window.
 * @param {number} count earlier messages left out
 * @returns {string} empty when none were
 */
export function describeLeftOut(count) {
  if (!count) return '';
  return count === 1
    ? "1 earlier message wasn't sent to the model: its context window is full."
    : `${count} earlier messages weren't sent to the model: its context window is full.`;
}

/**
 * The one-line summary of a saved rating's tags and comment.
 * @param {import('./protocol.js').Feedback|null|undefined} feedback
 * @returns {string} empty when it has neither
 */
export function describeFeedback(feedback) {
  if (!feedback) return '';
  const parts = [];
  if (feedback.tags?.length) parts.push(feedback.tags.join(', '));
  if (feedback.comment) parts.push(`“${feedback.comment}”`);
  return parts.join(' · ');
}

function fixed(value, digits) {
  return typeof value === 'number' && Number.isFinite(value) ? value.toFixed(digits) : '–';
}

/**
 * The one-line summary under a finished reply.
 * @param {Metrics|null|undefined} metrics
 * @returns {string} empty when there is nothing to show
 */
export function formatMetrics(metrics) {
  if (!metrics) return '';
  const parts = [];
  if (typeof metrics.totalTokens === 'number') parts.push(`${metrics.totalTokens} tokens`);
  parts.push(`${fixed(metrics.elapsedSeconds, 1)} s`);
  parts.push(`${fixed(metrics.throughputTokensPerSec, 1)} tok/s`);
  if (typeof metrics.timeToFirstTokenMs === 'number') parts.push(`first token ${Math.round(metrics.timeToFirstTokenMs)} ms`);
  return parts.join(' · ');
}

/**
 * A message's elements, built once; `updateMessage` fills them in.
 * @param {ChatMessage} msg
 * @returns {MessageRecord}
 */
export function buildMessage(msg) {
  const root = el('article', `message message--${msg.role}`);
  const head = el('div', 'message__role');
  const role = el('span', 'message__who', ROLE_LABELS[msg.role] ?? msg.role);
  // The model that wrote a reply: quiet, beside "Assistant".
  const model = el('span', 'message__model');
  model.hidden = true;
  head.append(role, model);
  const content = el('div', 'message__content');
  content.dataset.content = '';
  const rec = {
    root, head, model, content, rev: -1, length: 0, rich: null, text: null, editing: false,
  };
  if (msg.role === 'assistant') {
    content.classList.add('markdown');
    rec.rich = createRichText(content);
  } else {
    rec.text = document.createTextNode('');
    content.append(rec.text);
    // Folding is the reader's own: it survives the message's updates, not a reload.
    rec.more = el('button', 'message__more', 'Show more');
    rec.more.type = 'button';
    rec.more.dataset.action = 'show-more';
    rec.more.hidden = true;
    rec.expanded = false;
    rec.more.addEventListener('click', () => {
      rec.expanded = !rec.expanded;
      syncFold(rec, true);
    });
  }
  rec.steps = el('div', 'message__steps');
  rec.steps.dataset.steps = '';
  rec.stepsKey = '';
  rec.files = el('div', 'message__files');
  rec.files.dataset.attachments = '';
  rec.files.hidden = true;
  rec.filesKey = '';
  rec.note = el('p', 'message__note');
  rec.leftOut = el('p', 'message__left-out');
  rec.leftOut.hidden = true;
  rec.metrics = el('p', 'message__metrics');
  rec.actions = el('div', 'message__actions');
  rec.copy = button('copy', 'Copy', msg.role === 'assistant' ? 'Copy this reply' : 'Copy this message');
  rec.regenerate = button('regenerate', 'Regenerate', 'Regenerate the last answer');
  rec.edit = button('edit', 'Edit', 'Edit and resend this message');
  rec.retry = button('retry', 'Retry', 'Try again');
  rec.actions.append(rec.retry, rec.copy, rec.edit, rec.regenerate);
  // "‹ 2/3 ›": the versions at this place (an edit or a regenerate adds one), to step between.
  rec.branch = el('div', 'message__branch');
  rec.branch.setAttribute('role', 'group');
  rec.branch.hidden = true;
  rec.branchPrev = button('branch-prev', '‹', 'Previous version');
  rec.branchPrev.dataset.action = 'branch-prev';
  rec.branchPlace = el('span', 'message__branch-place');
  rec.branchNext = button('branch-next', '›', 'Next version');
  rec.branchNext.dataset.action = 'branch-next';
  rec.branch.append(rec.branchPrev, rec.branchPlace, rec.branchNext);
  rec.actions.prepend(rec.branch);
  const parts = [head, rec.steps, content, rec.more, rec.files, rec.note, rec.leftOut, rec.metrics, rec.actions].filter(Boolean);
  if (msg.role === 'assistant') {
    // A reply the token limit cut goes on where it stopped (`continue`).
    rec.continue = button('continue', 'Continue', 'Continue this reply where it stopped');
    rec.continue.dataset.action = 'continue';
    rec.regenerate.before(rec.continue);
    rec.up = thumb('up');
    rec.down = thumb('down');
    rec.copy.after(rec.up, rec.down);
    // A saved rating's tags and comment, and the way back to them.
    rec.feedback = el('p', 'message__feedback');
    rec.feedback.dataset.feedbackSummary = '';
    rec.feedback.hidden = true;
    rec.feedbackText = el('span', 'message__feedback-text');
    rec.feedbackEdit = el('button', 'message__action message__feedback-edit', 'Add details');
    rec.feedbackEdit.type = 'button';
    rec.feedbackEdit.dataset.action = 'feedback-edit';
    rec.feedback.append(rec.feedbackText, rec.feedbackEdit);
    rec.feedbackKey = '';
    parts.push(rec.feedback);
  }
  root.append(...parts);
  return rec;
}

const STEP_MARKS = { running: '', done: '✓', error: '✕', cancelled: '–' };

// One tool step: a compact line (name, state, time) that opens to its arguments and result.
// Tool output is untrusted like model text: it is set as text, never as HTML.
function buildStep(step) {
  const node = el('details', `step step--${step.status}`);
  node.dataset.step = '';
  node.dataset.callId = step.call_id;
  node.dataset.stepStatus = step.status;
  const summary = el('summary', 'step__line');
  const mark = el('span', 'step__mark', STEP_MARKS[step.status] ?? '');
  if (step.status === 'running') mark.classList.add('step__spinner');
  const time = step.elapsed_ms != null ? ` · ${fixed(step.elapsed_ms / 1000, 1)} s` : '';
  const label = { running: 'running', done: '', error: 'failed', cancelled: 'cancelled' }[step.status] ?? step.status;
  summary.append(mark, el('span', 'step__name', step.name), el('span', 'step__state', `${label ? ` ${label}` : ''}${time}`));
  const args = el('pre', 'step__arguments', step.arguments);
  args.dataset.stepArguments = '';
  node.append(summary, args);
  if (step.output != null) {
    const output = el('pre', 'step__output', step.output);
    output.dataset.stepOutput = '';
    node.append(output);
  }
  return node;
}

function updateSteps(rec, msg) {
  const steps = msg.steps ?? [];
  const key = steps.map((s) => `${s.call_id}:${s.status}:${s.output?.length ?? -1}`).join('|');
  if (key === rec.stepsKey) return;
  rec.stepsKey = key;
  // Keep each open step open when it is redrawn (a running step that ends).
  const open = new Set([...rec.steps.querySelectorAll('details[open]')].map((d) => d.dataset.callId));
  rec.steps.replaceChildren(...steps.map((step) => {
    const node = buildStep(step);
    if (open.has(step.call_id)) node.open = true;
    return node;
  }));
  setHidden(rec.steps, steps.length === 0);
}

// A message's files are drawn again only when which files it has changes: a thumbnail
// redrawn would load its image again.
function updateFiles(rec, msg) {
  const files = msg.attachments ?? [];
  const key = files.map((file) => `${file.id}:${file.url}`).join('|');
  if (key === rec.filesKey) return;
  rec.filesKey = key;
  rec.files.replaceChildren(...buildAttachments(files));
  setHidden(rec.files, files.length === 0);
}

// Writes only what differs: an unchanged write still invalidates style and layout, and the
// streaming message is updated on every animation frame.
function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

function setHidden(node, hidden) {
  if (node.hidden !== hidden) node.hidden = hidden;
}

function setData(node, key, value) {
  if (value === undefined) {
    if (key in node.dataset) delete node.dataset[key];
  } else if (node.dataset[key] !== value) {
    node.dataset[key] = value;
  }
}

function updateText(rec, msg) {
  if (rec.rich) {
    if (rec.rev !== msg.rev) rec.rich.update('', false);
    rec.rich.update(msg.content, isTerminal(msg.status));
  } else if (rec.rev === msg.rev && msg.content.length >= rec.length) {
    // Streaming only ever appends, so extend the one text node; a snapshot or refetch
    // (a new rev) may change earlier text and rewrites it.
    if (msg.content.length > rec.length) rec.text.appendData(msg.content.slice(rec.length));
  } else {
    rec.text.data = msg.content;
  }
  rec.rev = msg.rev;
  rec.length = msg.content.length;
}

/**
 * Bring a message's elements up to date with it, writing only what differs.
 * @param {MessageRecord} rec
 * @param {ChatMessage} msg
 * @param {{regenerate: string|null, edit: string|null}} flags  which message offers
 *   Regenerate and which Edit
 * @param {MessageContext} [context]
 */
export function updateMessage(rec, msg, flags, { modelLabel = (id) => id } = {}) {
  const { root } = rec;
  setData(root, 'messageId', msg.id);
  setData(root, 'role', msg.role);
  setData(root, 'status', msg.status);
  setHidden(root, Boolean(msg.superseded));
  // Screen readers would otherwise announce every streamed chunk of the live region.
  const busy = String(msg.status === 'streaming');
  if (root.getAttribute('aria-busy') !== busy) root.setAttribute('aria-busy', busy);
  const model = msg.role === 'assistant' && msg.model ? msg.model : '';
  setData(rec.model, 'messageModel', model || undefined);
  setText(rec.model, model ? modelLabel(model) : '');
  if (rec.model.title !== model) rec.model.title = model;
  setHidden(rec.model, !model);
  updateSteps(rec, msg);
  if (!rec.editing) updateText(rec, msg);
  if (rec.more) {
    rec.long = !rec.editing && isLongMessage(msg.content);
    syncFold(rec, false);
  }
  updateFiles(rec, msg);

  // Only our own unsent message is "sending"; a persisted one the server calls pending is not.
  if (rec.local !== Boolean(msg.local)) {
    rec.local = Boolean(msg.local);
    root.classList.toggle('message--local', rec.local);
  }
  let note = '';
  if (msg.error) note = describeFailure(msg.error);
  else if (msg.local && msg.status === 'pending') note = 'Sending…';
  else note = STATUS_NOTES[msg.status] ?? '';
  setText(rec.note, note);
  setHidden(rec.note, !note);
  const alarming = Boolean(msg.error) || msg.status === 'interrupted';
  if (rec.note.classList.contains('message__note--error') !== alarming) rec.note.classList.toggle('message__note--error', alarming);
  setData(rec.note, 'errorKind', msg.error ? errorClass(msg.error).kind : undefined);
  const leftOut = msg.role === 'assistant' ? msg.history_left_out ?? 0 : 0;
  setText(rec.leftOut, describeLeftOut(leftOut));
  setData(rec.leftOut, 'historyLeftOut', leftOut ? String(leftOut) : undefined);
  setHidden(rec.leftOut, !leftOut);
  const summary = msg.role === 'assistant' && msg.status !== 'streaming' ? formatMetrics(msg.metrics) : '';
  setText(rec.metrics, summary);
  setHidden(rec.metrics, !summary);

  setHidden(rec.copy, !isTerminal(msg.status) || !msg.content || Boolean(msg.local));
  setHidden(rec.regenerate, flags.regenerate !== msg.id);
  const editable = flags.idle && msg.role === 'user' && !msg.local && !msg.superseded;
  setHidden(rec.edit, !editable || rec.editing);
  const branch = branchOf(msg);
  setData(root, 'branch', branch?.place);
  setHidden(rec.branch, !branch);
  if (branch) {
    setText(rec.branchPlace, branch.place);
    rec.branch.setAttribute('aria-label', `Version ${branch.place.replace('/', ' of ')}`);
    rec.branchPrev.disabled = !branch.previous || !flags.idle;
    rec.branchNext.disabled = !branch.next || !flags.idle;
  }
  // Retry only what can succeed as it is: the server's `recoverable` decides (errorClass).
  const failed = msg.error && (msg.local || msg.role === 'assistant');
  const retryable = failed && errorClass(msg.error).recoverable;
  setHidden(rec.retry, !retryable || (msg.role === 'assistant' && flags.regenerate !== msg.id));
  const rateable = Boolean(rec.up) && isTerminal(msg.status) && !msg.local;
  if (rec.up) updateFeedback(rec, msg, rateable);
  const truncated = msg.role === 'assistant' && msg.status === 'complete' && msg.truncated === true;
  setData(root, 'truncated', truncated ? 'true' : undefined);
  if (rec.continue) setHidden(rec.continue, !truncated || flags.regenerate !== msg.id);
  const continuable = Boolean(rec.continue) && !rec.continue.hidden;
  setHidden(rec.actions, rec.copy.hidden && rec.regenerate.hidden && rec.edit.hidden && rec.retry.hidden && rec.branch.hidden && !rateable && !continuable);
}

// A long user message: folded to a few lines unless the reader unfolded it.
function syncFold(rec, toggled) {
  const folded = rec.long && !rec.expanded;
  setHidden(rec.more, !rec.long);
  if (rec.content.classList.contains('message__content--folded') !== folded) {
    rec.content.classList.toggle('message__content--folded', folded);
  }
  setData(rec.root, 'folded', rec.long ? String(folded) : undefined);
  const label = folded ? 'Show more' : 'Show less';
  setText(rec.more, label);
  const expanded = String(!folded);
  if (rec.more.getAttribute('aria-expanded') !== expanded) rec.more.setAttribute('aria-expanded', expanded);
  // Folding back a message taller than the screen would leave the reader far below it.
  if (toggled && folded) rec.root.scrollIntoView({ block: 'nearest' });
}

// Thumbs on every finished reply, pressed as the saved rating says, and the rating's details.
function updateFeedback(rec, msg, rateable) {
  const rating = rateable ? msg.feedback?.rating ?? null : null;
  for (const [node, value] of [[rec.up, 'up'], [rec.down, 'down']]) {
    setHidden(node, !rateable);
    const pressed = String(rating === value);
    if (node.getAttribute('aria-pressed') !== pressed) node.setAttribute('aria-pressed', pressed);
  }
  setData(rec.root, 'feedback', rating ?? undefined);
  const key = rating ? JSON.stringify([rating, msg.feedback.tags, msg.feedback.comment]) : '';
  if (key === rec.feedbackKey) return;
  rec.feedbackKey = key;
  const details = describeFeedback(rating ? msg.feedback : null);
  rec.feedbackText.textContent = details;
  rec.feedbackText.hidden = !details;
  rec.feedbackEdit.textContent = details ? 'Edit' : 'Add details';
  rec.feedbackEdit.setAttribute('aria-label', details ? 'Edit your feedback on this reply' : 'Add tags or a comment to your rating');
  setHidden(rec.feedback, !rating);
}
