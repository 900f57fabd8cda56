/**
 * The open thread's messages on screen: which have changed since the last paint (drawn in one
 * pass per animation frame, however fast tokens come), where each goes in the list, whether
 * the view follows the newest message or stays where the user scrolled, and the in-place
 * editor of a message. Each message's own elements are message.js's.
 *
 * @typedef {import('./protocol.js').ThreadState} ThreadState
 */
import { el } from './dom.js';
import { buildMessage, updateMessage } from './message.js';
import { isBusy, regenerable } from './protocol.js';

// How close to the bottom (px) still counts as "following" the stream.
const STICK_THRESHOLD = 48;

/**
 * Render a thread's messages into `list`, batching DOM work to one pass per animation frame.
 * @param {HTMLElement} list       the aria-live message list
 * @param {HTMLElement} scroller   the element that scrolls (list or an ancestor)
 * @param {{onFollowChange?: (following: boolean) => void,
 *   context?: import('./message.js').MessageContext}} [options]  context: what each message
 *   shows beside its own fields (message.js updateMessage)
 * @returns {{reset(state: ThreadState): void, update(state: ThreadState, ids: string[]): void,
 *   rename(from: string, to: string): void, scrollToBottom(): void, keepPosition(): void,
 *   following(): boolean,
 *   startEdit(id: string, onSave: (text: string) => void): void, record(id: string): object|undefined}}
 */
export function createMessageView(list, scroller, { onFollowChange = () => {}, context } = {}) {
  /** @type {Map<string, import('./message.js').MessageRecord>} */
  const records = new Map();
  const dirty = new Set();
  let state = null;
  let frame = 0;
  let stick = true;
  // Distance from the bottom to restore after older messages are put above.
  let anchor = null;
  let flags = { regenerate: null, idle: false };

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
    // Which message offers Regenerate moves as messages come and go; Edit and the branch
    // arrows are offered while no reply runs (`idle`).
    const next = { regenerate: regenerable(state)?.id ?? null, idle: !isBusy(state) };
    if (next.regenerate !== flags.regenerate) {
      if (flags.regenerate) dirty.add(flags.regenerate);
      if (next.regenerate) dirty.add(next.regenerate);
    }
    if (next.idle !== flags.idle) {
      for (const m of state.messages) if (m.role === 'user' || m.siblings?.count > 1) dirty.add(m.id);
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
      updateMessage(rec, msg, flags, context);
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
      flags = { regenerate: null, idle: false };
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
