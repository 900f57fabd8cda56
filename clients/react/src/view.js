/**
 * What React renders of a thread: an immutable view of the protocol's state, which the
 * page's reducer (static/chat/protocol.js) mutates in place. A message that did not change
 * since the previous view is the same object, so a memoized row does not render again; a
 * view in which nothing changed is the previous view itself.
 *
 * ThreadState and ChatMessage are protocol.js's; the types are declared in index.d.ts.
 * @typedef {{messages: readonly object[], reply: object|null, busy: boolean}} ThreadView
 */
import { isBusy } from './chat.js';

/** The view of a thread with nothing in it. */
export const EMPTY_VIEW = Object.freeze({ messages: Object.freeze([]), reply: null, busy: false });

// The state's message copied once: its steps are replaced in place as tool frames come.
function frozen(message) {
  const copy = { ...message, steps: Object.freeze((message.steps ?? []).map((step) => Object.freeze({ ...step }))) };
  delete copy.superseded;
  return Object.freeze(copy);
}

/**
 * The view of `state` now.
 * @param {object} state a ThreadState (protocol.js createThreadState)
 * @param {{previous?: ThreadView|null, changed?: Set<string>}} [since] the view last handed
 *   to React, and the ids of the messages the reducer reported changed since then
 *   (FrameResult.changed); without `previous` every message is copied
 * @returns {ThreadView} the shown messages (a regenerate or edit in flight hides what it
 *   replaces), oldest first; `reply`, the reply streaming now (followed live), or null; and
 *   `busy`, whether a reply runs or a command awaits its answer
 */
export function threadView(state, { previous = null, changed = new Set() } = {}) {
  const before = new Map((previous?.messages ?? []).map((m) => [m.id, m]));
  const messages = [];
  let reply = null;
  for (const message of state.messages) {
    if (message.superseded) continue;
    const kept = before.get(message.id);
    const shown = kept && !changed.has(message.id) ? kept : frozen(message);
    messages.push(shown);
    if (message.status === 'streaming' && typeof message.lastSeq === 'number') reply = shown;
  }
  const busy = isBusy(state);
  if (
    previous
    && previous.busy === busy
    && previous.reply === reply
    && previous.messages.length === messages.length
    && messages.every((m, i) => m === previous.messages[i])
  ) {
    return previous;
  }
  return Object.freeze({ messages: Object.freeze(messages), reply, busy });
}
