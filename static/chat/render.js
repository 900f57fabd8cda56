/**
 * DOM rendering of the chat page. Untrusted text (user and model) only ever reaches the
 * DOM as text nodes; nothing here assigns innerHTML.
 *
 * @typedef {import('./protocol.js').ThreadState} ThreadState
 * @typedef {import('./protocol.js').ChatMessage} ChatMessage
 * @typedef {import('./protocol.js').Metrics} Metrics
 * @typedef {import('./api.js').Thread} Thread
 */

const ROLE_LABELS = { user: 'You', assistant: 'Assistant', system: 'System' };
const STATUS_NOTES = {
  cancelled: 'Stopped',
  interrupted: 'Interrupted: the reply was cut off and kept as far as it got.',
};
// How close to the bottom (px) still counts as "following" the stream.
const STICK_THRESHOLD = 48;

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
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

function buildMessage(msg) {
  const root = el('article', `message message--${msg.role}`);
  const head = el('div', 'message__role', ROLE_LABELS[msg.role] ?? msg.role);
  const content = el('div', 'message__content');
  content.dataset.content = '';
  const text = document.createTextNode('');
  content.append(text);
  const note = el('p', 'message__note');
  const metrics = el('p', 'message__metrics');
  root.append(head, content, note, metrics);
  return { root, head, text, note, metrics, rev: -1, length: 0 };
}

function updateMessage(rec, msg) {
  const { root } = rec;
  root.dataset.messageId = msg.id;
  root.dataset.role = msg.role;
  root.dataset.status = msg.status;
  // Screen readers would otherwise announce every streamed chunk of the live region.
  root.setAttribute('aria-busy', String(msg.status === 'streaming'));
  rec.head.textContent = msg.role === 'assistant' && msg.model ? `Assistant · ${msg.model}` : ROLE_LABELS[msg.role] ?? msg.role;

  // Streaming only ever appends, so extend the one text node; a snapshot or refetch
  // (a new rev) may change earlier text and rewrites it.
  if (rec.rev === msg.rev && msg.content.length >= rec.length) {
    if (msg.content.length > rec.length) rec.text.appendData(msg.content.slice(rec.length));
  } else {
    rec.text.data = msg.content;
    rec.rev = msg.rev;
  }
  rec.length = msg.content.length;

  // Only our own unsent message is "sending"; a persisted one the server calls pending is not.
  root.classList.toggle('message--local', Boolean(msg.local));
  const note = msg.error?.message || (msg.local && msg.status === 'pending' ? 'Sending…' : STATUS_NOTES[msg.status] ?? '');
  rec.note.textContent = note;
  rec.note.hidden = !note;
  rec.note.classList.toggle('message__note--error', Boolean(msg.error));
  const summary = msg.role === 'assistant' && msg.status !== 'streaming' ? formatMetrics(msg.metrics) : '';
  rec.metrics.textContent = summary;
  rec.metrics.hidden = !summary;
}

/**
 * Render a thread's messages into `list`, batching DOM work to one pass per animation frame.
 * @param {HTMLElement} list       the aria-live message list
 * @param {HTMLElement} scroller   the element that scrolls (list or an ancestor)
 * @returns {{reset(state: ThreadState): void, update(state: ThreadState, ids: string[]): void,
 *   rename(from: string, to: string): void, scrollToBottom(): void}}
 */
export function createMessageView(list, scroller) {
  /** @type {Map<string, ReturnType<typeof buildMessage>>} */
  const records = new Map();
  const dirty = new Set();
  let state = null;
  let frame = 0;
  let stick = true;

  scroller.addEventListener('scroll', () => {
    stick = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight <= STICK_THRESHOLD;
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
      updateMessage(rec, msg);
    }
    dirty.clear();
    if (stick) scroller.scrollTop = scroller.scrollHeight;
  }

  return {
    reset(next) {
      state = next;
      records.clear();
      dirty.clear();
      list.replaceChildren();
      for (const m of next.messages) dirty.add(m.id);
      stick = true;
      cancelAnimationFrame(frame);
      flush();
    },
    update(next, ids) {
      state = next;
      for (const id of ids) dirty.add(id);
      // Tokens arrive far faster than the screen refreshes; touch the DOM once per frame.
      if (!frame && dirty.size) frame = requestAnimationFrame(flush);
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
      stick = true;
      scroller.scrollTop = scroller.scrollHeight;
    },
  };
}

/**
 * Render the thread sidebar. Links keep real hrefs so middle-click and copy-link work.
 * @param {HTMLElement} list    a <ul>
 * @param {Thread[]} threads    newest first
 * @param {string|null} activeId
 */
export function renderThreadList(list, threads, activeId) {
  const items = threads.map((thread) => {
    const title = thread.title?.trim() || 'Untitled';
    const item = el('li', 'thread');
    item.dataset.threadId = thread.id;
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
