/**
 * What the buttons on the open thread's messages do: copy a message or a code block,
 * regenerate the last answer, continue one the token limit cut, edit the last message in place,
 * retry a failed one.
 *
 * @typedef {import('./protocol.js').ThreadState} ThreadState
 * @typedef {ReturnType<typeof import('./client.js').createChatClient>} ChatClient
 */
import { editable } from './protocol.js';
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
  function editLast() {
    const target = editable(state());
    if (!target || !client()) return false;
    view.startEdit(target.id, (text) => {
      if (text.length > maxChars) {
        notices.tooLarge(text.length);
        return;
      }
      notices.hide();
      client()?.edit(target.id, text);
      view.scrollToBottom();
    });
    return true;
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
      editLast();
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

  return { editLast };
}
