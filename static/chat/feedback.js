/**
 * Rating a reply: the thumbs under each finished reply (message.js draws them as the saved
 * rating says), and the panel that opens after a thumb with the operator's tags and a
 * comment. A thumb saves at once (a rating alone counts); the panel's Save adds the details;
 * the pressed thumb again removes the rating. Every save is a PUT through the thread's client
 * (client.js `rate`), whose state then shows it; other tabs hear of it by a `feedback` frame.
 *
 * @typedef {import('./protocol.js').ThreadState} ThreadState
 * @typedef {ReturnType<typeof import('./client.js').createChatClient>} ChatClient
 */
import { el } from './dom.js';
import { describeRequestError } from './notices.js';

// The server's bounds (chat/services.py): checked here too, so the panel says so at once.
const MAX_TAGS = 10;
const MAX_COMMENT = 2000;

/**
 * Wire the feedback controls of the messages in `list`.
 * @param {HTMLElement} list  the message list (messageview.js draws into it)
 * @param {object} options
 * @param {() => ThreadState} options.state
 * @param {() => ChatClient|null} options.client
 * @param {{record(id: string): import('./message.js').MessageRecord|undefined}} options.view
 * @param {string[]} options.tags  the operator's tags (FEEDBACK_TAGS)
 * @param {import('./notices.js').Notices} options.notices
 * @returns {{sync(messageId: string): void, reset(): void}}  sync: a reply's feedback changed
 *   (closes its panel when the rating went away); reset: the thread view was cleared
 */
export function createFeedback(list, { state, client, view, tags, notices }) {
  /** @type {{id: string, panel: HTMLFormElement}|null} */
  let open = null;
  // Replies whose rating is being saved: their thumbs wait.
  const saving = new Set();

  function close({ focus = false } = {}) {
    if (!open) return;
    const { id, panel } = open;
    open = null;
    const inside = panel.contains(document.activeElement);
    panel.remove();
    if (focus || inside) {
      const rec = view.record(id);
      const rating = state().byId.get(id)?.feedback?.rating;
      (rating === 'down' ? rec?.down : rec?.up)?.focus();
    }
  }

  function setBusy(id, busy) {
    if (busy) saving.add(id);
    else saving.delete(id);
    const rec = view.record(id);
    // Not `disabled`: a disabled button loses the keyboard's focus.
    for (const node of [rec?.up, rec?.down]) {
      if (!node) continue;
      if (busy) node.setAttribute('aria-busy', 'true');
      else node.removeAttribute('aria-busy');
    }
  }

  function chip(tag, pressed) {
    const node = el('button', 'chip', tag);
    node.type = 'button';
    node.dataset.feedbackTag = tag;
    node.setAttribute('aria-pressed', String(pressed));
    return node;
  }

  function openPanel(id) {
    const msg = state().byId.get(id);
    const rec = view.record(id);
    if (!msg?.feedback || !rec) return;
    if (open?.id === id && open.panel.isConnected) {
      open.panel.querySelector('[data-feedback-tag], textarea')?.focus();
      return;
    }
    close();
    const given = msg.feedback;
    const panel = el('form', 'feedback');
    panel.dataset.feedbackPanel = '';
    panel.noValidate = true;
    const titleId = `feedback-title-${id}`;
    panel.setAttribute('aria-labelledby', titleId);
    const title = el('p', 'feedback__title', given.rating === 'up' ? 'What was good about it?' : 'What went wrong?');
    title.id = titleId;
    title.append(el('span', 'feedback__optional', ' (optional)'));
    // The operator's tags, then any the reply has that the operator no longer lists (set by
    // the API or an older list): kept, so saving here never drops them unseen.
    const offered = [...new Set([...tags, ...given.tags])];
    const chips = el('div', 'feedback__tags');
    chips.setAttribute('role', 'group');
    chips.setAttribute('aria-label', 'Tags');
    chips.append(...offered.map((tag) => chip(tag, given.tags.includes(tag))));
    const comment = el('textarea', 'feedback__comment');
    comment.name = 'feedback-comment';
    comment.rows = 2;
    comment.maxLength = MAX_COMMENT;
    comment.placeholder = 'Add a comment (optional)';
    comment.setAttribute('aria-label', 'Comment');
    comment.value = given.comment;
    const error = el('p', 'feedback__error');
    error.setAttribute('role', 'alert');
    error.hidden = true;
    const cancel = el('button', 'button button--quiet', 'Cancel');
    cancel.type = 'button';
    cancel.dataset.action = 'feedback-cancel';
    const save = el('button', 'button button--primary', 'Save');
    save.type = 'submit';
    save.dataset.action = 'feedback-save';
    const buttons = el('div', 'feedback__buttons');
    buttons.append(cancel, save);
    panel.append(title);
    if (offered.length) panel.append(chips);
    panel.append(comment, error, buttons);

    const fail = (text) => {
      error.textContent = text;
      error.hidden = false;
    };
    chips.addEventListener('click', (event) => {
      const node = event.target.closest('[data-feedback-tag]');
      if (!node) return;
      const pressed = node.getAttribute('aria-pressed') !== 'true';
      if (pressed && chips.querySelectorAll('[aria-pressed="true"]').length >= MAX_TAGS) {
        fail(`At most ${MAX_TAGS} tags.`);
        return;
      }
      error.hidden = true;
      node.setAttribute('aria-pressed', String(pressed));
    });
    cancel.addEventListener('click', () => close({ focus: true }));
    panel.addEventListener('keydown', (event) => {
      if (event.key === 'Escape') {
        // The page's own Escape (close the sidebar, stop a reply) is not meant here.
        event.preventDefault();
        event.stopPropagation();
        close({ focus: true });
      } else if (event.key === 'Enter' && (event.ctrlKey || event.metaKey) && event.target === comment) {
        event.preventDefault();
        panel.requestSubmit();
      }
    });
    panel.addEventListener('submit', async (event) => {
      event.preventDefault();
      const chat = client();
      const rating = state().byId.get(id)?.feedback?.rating;
      if (!chat || !rating) {
        close();
        return;
      }
      const chosen = [...chips.querySelectorAll('[aria-pressed="true"]')].map((node) => node.dataset.feedbackTag);
      save.disabled = true;
      error.hidden = true;
      try {
        await chat.rate(id, { rating, tags: chosen, comment: comment.value });
        if (open?.panel === panel) close({ focus: true });
        notices.announce('Feedback saved.');
      } catch (failure) {
        fail(describeRequestError(failure, 'Could not save your feedback'));
      } finally {
        save.disabled = false;
      }
    });

    rec.root.append(panel);
    open = { id, panel };
    (chips.querySelector('[data-feedback-tag]') ?? comment).focus();
  }

  async function rate(id, rating) {
    const msg = state().byId.get(id);
    const chat = client();
    if (!msg || !chat || saving.has(id)) return;
    const before = msg.feedback;
    // The pressed thumb again takes the rating back; the other one replaces it (its tags and
    // comment kept: they are the user's words, and the panel shows them to change).
    const given = before?.rating === rating
      ? { rating: null }
      : { rating, tags: before?.tags ?? [], comment: before?.comment ?? '' };
    setBusy(id, true);
    try {
      await chat.rate(id, given);
    } catch (error) {
      notices.failed(error, 'Could not save your feedback', { retry: () => rate(id, rating) });
      return;
    } finally {
      setBusy(id, false);
    }
    if (given.rating) {
      notices.announce(rating === 'up' ? 'Rated a good reply.' : 'Rated a bad reply.');
      openPanel(id);
    } else {
      notices.announce('Rating removed.');
      if (open?.id === id) close({ focus: true });
    }
  }

  list.addEventListener('click', (event) => {
    const node = event.target.closest('[data-action^="feedback-"]');
    const id = node?.closest('[data-message-id]')?.dataset.messageId;
    if (!node || !id || node.closest('[data-feedback-panel]')) return;
    const action = node.dataset.action;
    if (action === 'feedback-up') rate(id, 'up');
    else if (action === 'feedback-down') rate(id, 'down');
    else if (action === 'feedback-edit') openPanel(id);
  });

  return {
    sync(messageId) {
      if (open?.id === messageId && !state().byId.get(messageId)?.feedback) close();
    },
    reset() {
      open = null;
      saving.clear();
    },
  };
}
