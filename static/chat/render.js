/**
 * DOM rendering of the chat page: messages (batched to one pass per animation frame), the
 * thread list, the connection state. User text only ever reaches the DOM as text nodes;
 * model text goes through richtext.js (markdown sanitized by DOMPurify).
 *
 * @typedef {import('./protocol.js').ThreadState} ThreadState
 * @typedef {import('./protocol.js').ChatMessage} ChatMessage
 * @typedef {import('./protocol.js').Metrics} Metrics
 * @typedef {import('./api.js').Thread} Thread
 */
import { editable, errorClass, isTerminal, regenerable } from './protocol.js';
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
// How close to the bottom (px) still counts as "following" the stream.
const STICK_THRESHOLD = 48;

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

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

function buildMessage(msg) {
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

function updateMessage(rec, msg, flags) {
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

/**
 * Render a thread's messages into `list`, batching DOM work to one pass per animation frame.
 * @param {HTMLElement} list       the aria-live message list
 * @param {HTMLElement} scroller   the element that scrolls (list or an ancestor)
 * @param {{onFollowChange?: (following: boolean) => void}} [options]
 * @returns {{reset(state: ThreadState): void, update(state: ThreadState, ids: string[]): void,
 *   rename(from: string, to: string): void, scrollToBottom(): void, keepPosition(): void,
 *   following(): boolean,
 *   startEdit(id: string, onSave: (text: string) => void): void, record(id: string): object|undefined}}
 */
export function createMessageView(list, scroller, { onFollowChange = () => {} } = {}) {
  /** @type {Map<string, ReturnType<typeof buildMessage>>} */
  const records = new Map();
  const dirty = new Set();
  let state = null;
  let frame = 0;
  let stick = true;
  // Distance from the bottom to restore after older messages are put above.
  let anchor = null;
  let flags = { regenerate: null, edit: null };

  function setStick(next) {
    if (next === stick) return;
    stick = next;
    onFollowChange(stick);
  }

  scroller.addEventListener('scroll', () => {
    setStick(scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight <= STICK_THRESHOLD);
  }, { passive: true });

  function place(msg, node) {
    const index = state.messages.indexOf(msg);
    for (let i = index + 1; i < state.messages.length; i += 1) {
      const next = records.get(state.messages[i].id);
      if (next) {
        list.insertBefore(node, next.root);
        return;
      }
    }
    list.append(node);
  }

  function flush() {
    frame = 0;
    if (!state) return;
    // Which message offers Regenerate and Edit moves as messages come and go.
    const next = { regenerate: regenerable(state)?.id ?? null, edit: editable(state)?.id ?? null };
    for (const key of ['regenerate', 'edit']) {
      if (next[key] !== flags[key]) {
        if (flags[key]) dirty.add(flags[key]);
        if (next[key]) dirty.add(next[key]);
      }
    }
    flags = next;
    for (const id of dirty) {
      const msg = state.byId.get(id);
      let rec = records.get(id);
      if (!msg) {
        rec?.root.remove();
        records.delete(id);
        continue;
      }
      if (!rec) {
        rec = buildMessage(msg);
        records.set(id, rec);
        place(msg, rec.root);
      }
      updateMessage(rec, msg, flags);
    }
    dirty.clear();
    if (anchor !== null) {
      scroller.scrollTop = scroller.scrollHeight - anchor;
      anchor = null;
    } else if (stick) {
      scroller.scrollTop = scroller.scrollHeight;
    }
  }

  function schedule() {
    // Tokens arrive far faster than the screen refreshes; touch the DOM once per frame.
    if (!frame && dirty.size) frame = requestAnimationFrame(flush);
  }

  return {
    reset(nextState) {
      state = nextState;
      records.clear();
      dirty.clear();
      list.replaceChildren();
      for (const m of nextState.messages) dirty.add(m.id);
      flags = { regenerate: null, edit: null };
      anchor = null;
      setStick(true);
      cancelAnimationFrame(frame);
      flush();
    },
    update(nextState, ids) {
      state = nextState;
      for (const id of ids) dirty.add(id);
      // Actions depend on the whole thread (busy or not): recheck them with any change.
      if (ids.length === 0 && state.messages.length) dirty.add(state.messages.at(-1).id);
      schedule();
    },
    rename(from, to) {
      const rec = records.get(from);
      if (rec) {
        records.delete(from);
        records.set(to, rec);
        rec.root.dataset.messageId = to;
      }
      if (dirty.delete(from)) dirty.add(to);
    },
    scrollToBottom() {
      setStick(true);
      scroller.scrollTop = scroller.scrollHeight;
    },
    keepPosition() {
      anchor = scroller.scrollHeight - scroller.scrollTop;
    },
    /** Whether the view sticks to the newest message (the user has not scrolled up). */
    following: () => stick,
    startEdit(id, onSave) {
      const rec = records.get(id);
      const msg = state?.byId.get(id);
      if (!rec || !msg || rec.editing) return;
      rec.editing = true;
      rec.edit.hidden = true;
      const form = el('form', 'message__editor');
      const area = el('textarea', 'message__editor-input');
      area.value = msg.content;
      area.rows = Math.min(10, msg.content.split('\n').length + 1);
      area.setAttribute('aria-label', 'Edit your message');
      area.name = 'edit';
      const save = el('button', 'button button--primary', 'Save & send');
      save.type = 'submit';
      save.dataset.action = 'save-edit';
      const cancel = el('button', 'button button--quiet', 'Cancel');
      cancel.type = 'button';
      const row = el('div', 'message__editor-buttons');
      row.append(cancel, save);
      form.append(area, row);
      rec.content.hidden = true;
      rec.content.after(form);
      const close = () => {
        form.remove();
        rec.content.hidden = false;
        rec.editing = false;
        dirty.add(id);
        schedule();
      };
      form.addEventListener('submit', (event) => {
        event.preventDefault();
        const text = area.value.trim();
        if (!text) return;
        close();
        onSave(text);
      });
      cancel.addEventListener('click', close);
      area.addEventListener('keydown', (event) => {
        if (event.key === 'Escape') {
          event.preventDefault();
          close();
        } else if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
          event.preventDefault();
          form.requestSubmit();
        }
      });
      area.focus();
      area.setSelectionRange(area.value.length, area.value.length);
    },
    record: (id) => records.get(id),
  };
}

/**
 * Render the thread sidebar. Links keep real hrefs so middle-click and copy-link work.
 * @param {HTMLElement} list    a <ul>
 * @param {Thread[]} threads    newest first
 * @param {string|null} activeId
 * @param {string|null} [renamingId]  the thread whose title is being edited in place
 */
export function renderThreadList(list, threads, activeId, renamingId = null) {
  const items = threads.map((thread) => {
    const title = thread.title?.trim() || 'Untitled';
    const item = el('li', 'thread');
    item.dataset.threadId = thread.id;
    if (thread.id === renamingId) {
      const form = el('form', 'thread__rename');
      const input = el('input', 'thread__rename-input');
      input.name = 'title';
      input.value = thread.title ?? '';
      input.maxLength = 200;
      input.setAttribute('aria-label', 'New title');
      form.append(input);
      item.append(form);
      return item;
    }
    const link = el('a', 'thread__link', title);
    link.href = `/t/${thread.id}/`;
    link.title = title;
    if (thread.id === activeId) link.setAttribute('aria-current', 'page');
    const rename = el('button', 'thread__action', '✎');
    rename.type = 'button';
    rename.dataset.threadAction = 'rename';
    rename.setAttribute('aria-label', `Rename “${title}”`);
    const remove = el('button', 'thread__action', '×');
    remove.type = 'button';
    remove.dataset.threadAction = 'delete';
    remove.setAttribute('aria-label', `Delete “${title}”`);
    item.append(link, rename, remove);
    return item;
  });
  list.replaceChildren(...items);
}

const CONNECTION_LABELS = {
  connecting: 'Connecting…',
  open: 'Connected',
  reconnecting: 'Reconnecting…',
  offline: 'Offline',
};

/**
 * Show the connection state; the attribute value is the page hook.
 * @param {HTMLElement} node the [data-connection] element
 * @param {import('./connection.js').ConnectionState} state
 */
export function renderConnection(node, state) {
  node.dataset.connection = state;
  node.textContent = CONNECTION_LABELS[state] ?? state;
}
