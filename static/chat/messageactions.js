/**
 * What the buttons on the open thread's messages do: copy a message or a code block,
 * regenerate the last answer, continue one the token limit cut, edit a message in place (a new
 * branch), step between a message's versions ("‹ 2/3 ›"), retry a failed one.
 *
 * @typedef {import('./protocol.js').ThreadState} ThreadState
 * @typedef {ReturnType<typeof import('./client.js').createChatClient>} ChatClient
 */
import { branchOf, canEdit, editable } from './protocol.js';
import { copyText } from './richtext.js';

/**
 * Wire the actions of the messages in `list`.
 * @param {HTMLElement} list  the message list (messageview.js draws into it)
 * @param {object} options
 * @param {() => ThreadState} options.state      the open thread's messages
 * @param {() => ChatClient|null} options.client  the open thread's client
 * @param {ReturnType<typeof import('./messageview.js').createMessageView>} options.view
 * @param {number} options.maxChars
 * @param {import('./notices.js').Notices} options.notices
 * @param {import('./composer.js').Composer} options.composer
 * @returns {{editLast(): boolean}}  editLast opens the last user message's editor
 */
export function createMessageActions(list, { state, client, view, maxChars, notices, composer }) {
  function edit(id) {
    if (!canEdit(state(), id) || !client()) return false;
    view.startEdit(id, (text) => {
      if (text.length > maxChars) {
        notices.tooLarge(text.length);
        return;
      }
      notices.hide();
      client()?.edit(id, text);
      view.scrollToBottom();
    });
    return true;
  }

  function editLast() {
    const target = editable(state());
    return target ? edit(target.id) : false;
  }

  // Show another version of the message: the same place in the path keeps the keyboard's
  // focus on its arrows once the branch is drawn.
  async function step(id, direction) {
    const chat = client();
    const branch = branchOf(state().byId.get(id));
    const target = direction === 'prev' ? branch?.previous : branch?.next;
    if (!chat || !target) return;
    const place = state().messages.findIndex((m) => m.id === id);
    const focused = list.contains(document.activeElement);
    notices.hide();
    try {
      await chat.switchTo(target);
    } catch (error) {
      notices.failed(error, 'Could not show that version');
      return;
    }
    if (chat !== client()) return;
    notices.announce(`Version ${branchOf(state().messages[place])?.place.replace('/', ' of ') ?? ''}`);
    if (!focused) return;
    requestAnimationFrame(() => {
      const group = view.record(state().messages[place]?.id)?.branch;
      const same = group?.querySelector(`[data-action="branch-${direction}"]`);
      (same && !same.disabled ? same : group?.querySelector('button:not(:disabled)'))?.focus();
    });
  }

  async function onMessageAction(action, id, node) {
    const msg = state().byId.get(id);
    const chat = client();
    if (!msg || !chat) return;
    if (action === 'copy') {
      flash(node, (await copyText(msg.content)) ? 'Copied' : 'Copy failed');
    } else if (action === 'regenerate') {
      notices.hide();
      chat.regenerate();
      view.scrollToBottom();
    } else if (action === 'edit') {
      edit(id);
    } else if (action === 'branch-prev' || action === 'branch-next') {
      step(id, action === 'branch-prev' ? 'prev' : 'next');
    } else if (action === 'continue') {
      notices.hide();
      chat.continue(id);
      view.scrollToBottom();
    } else if (action === 'retry') {
      notices.hide();
      if (msg.local) {
        chat.retry(id);
        composer.clearIf(msg.content);
      } else {
        chat.regenerate();
      }
    }
  }

  function flash(node, text) {
    const before = node.textContent;
    node.textContent = text;
    node.disabled = true;
    setTimeout(() => {
      node.textContent = before;
      node.disabled = false;
    }, 1200);
  }

  list.addEventListener('click', async (event) => {
    const codeCopy = event.target.closest('[data-copy-code]');
    if (codeCopy) {
      const code = codeCopy.closest('.codeblock')?.querySelector('code');
      flash(codeCopy, (await copyText(code?.textContent ?? '')) ? 'Copied' : 'Copy failed');
      return;
    }
    const actionNode = event.target.closest('[data-message-action]');
    const id = actionNode?.closest('[data-message-id]')?.dataset.messageId;
    if (actionNode && id) onMessageAction(actionNode.dataset.messageAction, id, actionNode);
  });

  // Left and right arrows step between versions while the focus is on a message's arrows.
  list.addEventListener('keydown', (event) => {
    if (event.key !== 'ArrowLeft' && event.key !== 'ArrowRight') return;
    const group = event.target.closest?.('.message__branch');
    const id = group?.closest('[data-message-id]')?.dataset.messageId;
    if (!id) return;
    event.preventDefault();
    step(id, event.key === 'ArrowLeft' ? 'prev' : 'next');
  });

  return { editLast };
}
