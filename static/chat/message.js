/**
 * One message on screen: its elements (role, tool steps, text, note, metrics, actions), built
 * once and then updated in place, touching only what changed. User text only ever reaches
 * the DOM as text nodes; model text goes through richtext.js (markdown sanitized by
 * DOMPurify); tool output is set as text.
 *
 * @typedef {import('./protocol.js').ChatMessage} ChatMessage
 * @typedef {import('./protocol.js').Metrics} Metrics
 * @typedef {object} MessageRecord  a message's elements and what they show
 * @property {HTMLElement} root     the `[data-message-id]` element
 * @property {HTMLElement} content  the `[data-content]` element
 * @property {HTMLButtonElement} edit
 * @property {boolean} editing      its text is being edited in place (messageview.js)
 */
import { el } from './dom.js';
import { errorClass, isTerminal } from './protocol.js';
import { createRichText } from './richtext.js';

const ROLE_LABELS = { user: 'You', assistant: 'Assistant', system: 'System' };
const STATUS_NOTES = {
  cancelled: 'Stopped.',
  interrupted: 'Interrupted: the reply was cut off and kept as far as it got.',
};
const ERROR_LABELS = {
  network: 'Network problem',
  timeout: 'Timed out',
  server: 'Server error',
  rate_limit: 'Rate limited',
  limit: 'Too many connections',
  request: 'Not sent',
};

function button(action, label, ariaLabel) {
  const node = el('button', 'message__action', label);
  node.type = 'button';
  node.dataset.messageAction = action;
  if (ariaLabel) node.setAttribute('aria-label', ariaLabel);
  return node;
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
 * What to tell the user about a failed message.
 * @param {{code: string, message?: string, recoverable?: boolean}} error
 * @returns {string}
 */
export function describeFailure(error) {
  const { kind } = errorClass(error);
  if (error.code === 'interrupted') return STATUS_NOTES.interrupted;
  return `${ERROR_LABELS[kind]}: ${error.message || error.code}`;
}

/**
 * A message's elements, built once; `updateMessage` fills them in.
 * @param {ChatMessage} msg
 * @returns {MessageRecord}
 */
export function buildMessage(msg) {
  const root = el('article', `message message--${msg.role}`);
  const head = el('div', 'message__role', ROLE_LABELS[msg.role] ?? msg.role);
  const content = el('div', 'message__content');
  content.dataset.content = '';
  const rec = { root, head, content, rev: -1, length: 0, rich: null, text: null, editing: false };
  if (msg.role === 'assistant') {
    content.classList.add('markdown');
    rec.rich = createRichText(content);
  } else {
    rec.text = document.createTextNode('');
    content.append(rec.text);
  }
  rec.steps = el('div', 'message__steps');
  rec.steps.dataset.steps = '';
  rec.stepsKey = '';
  rec.note = el('p', 'message__note');
  rec.metrics = el('p', 'message__metrics');
  rec.actions = el('div', 'message__actions');
  rec.copy = button('copy', 'Copy', msg.role === 'assistant' ? 'Copy this reply' : 'Copy this message');
  rec.regenerate = button('regenerate', 'Regenerate', 'Regenerate the last answer');
  rec.edit = button('edit', 'Edit', 'Edit and resend this message');
  rec.retry = button('retry', 'Retry', 'Try again');
  rec.actions.append(rec.retry, rec.copy, rec.edit, rec.regenerate);
  root.append(head, rec.steps, content, rec.note, rec.metrics, rec.actions);
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
 */
export function updateMessage(rec, msg, flags) {
  const { root } = rec;
  setData(root, 'messageId', msg.id);
  setData(root, 'role', msg.role);
  setData(root, 'status', msg.status);
  setHidden(root, Boolean(msg.superseded));
  // Screen readers would otherwise announce every streamed chunk of the live region.
  const busy = String(msg.status === 'streaming');
  if (root.getAttribute('aria-busy') !== busy) root.setAttribute('aria-busy', busy);
  setText(rec.head, msg.role === 'assistant' && msg.model ? `Assistant · ${msg.model}` : ROLE_LABELS[msg.role] ?? msg.role);
  updateSteps(rec, msg);
  if (!rec.editing) updateText(rec, msg);

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
  const summary = msg.role === 'assistant' && msg.status !== 'streaming' ? formatMetrics(msg.metrics) : '';
  setText(rec.metrics, summary);
  setHidden(rec.metrics, !summary);

  setHidden(rec.copy, !isTerminal(msg.status) || !msg.content || Boolean(msg.local));
  setHidden(rec.regenerate, flags.regenerate !== msg.id);
  setHidden(rec.edit, flags.edit !== msg.id || rec.editing);
  // Retry only what can succeed as it is: the server's `recoverable` decides (errorClass).
  const failed = msg.error && (msg.local || msg.role === 'assistant');
  const retryable = failed && errorClass(msg.error).recoverable;
  setHidden(rec.retry, !retryable || (msg.role === 'assistant' && flags.regenerate !== msg.id));
  setHidden(rec.actions, rec.copy.hidden && rec.regenerate.hidden && rec.edit.hidden && rec.retry.hidden);
}
