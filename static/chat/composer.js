/**
 * The composer: the message box and its keys, Send and Stop, the length counter, the drafts
 * (one per thread, kept in sessionStorage), and the files a message carries (their chips and
 * uploads are uploadtray.js's; a hint when the model cannot take an image). It holds no
 * thread state of its own: it asks the open thread (threadview.js) through the callbacks it
 * is given.
 *
 * @typedef {object} ComposerThread  what the composer needs of the open thread
 * @property {() => string|null} id        the open thread (null: none yet), for its draft
 * @property {() => boolean} canSend       nothing is loading, being created, or replying
 * @property {() => boolean} busy          a reply runs (Stop is offered)
 * @property {(text: string, options?: {attachments?: import('./protocol.js').Attachment[]}) => Promise<void>} send
 *   throws when a thread could not be created
 * @property {() => import('./models.js').ModelInfo|undefined} model  the model the next reply uses
 * @property {() => void} stop
 * @property {() => boolean} editLast      opens the last message's editor; false if none
 * @typedef {object} Composer
 * @property {() => void} send             send what is typed
 * @property {() => void} sync             Send and Stop as the thread's state says
 * @property {(from: string|null, to: string|null, options?: {carry?: boolean}) => void} switchThread
 *   keep the draft of the thread left and bring back the next one's; carry: keep the text
 *   (the thread was just made for it)
 * @property {(options?: {keepTyped?: boolean}) => void} restore  bring back the open thread's draft
 * @property {(text: string, attachments?: import('./protocol.js').Attachment[]) => void} giveBack
 *   a message was refused: its text back, unless something is typed, and its files to send again
 * @property {(attachments: import('./protocol.js').Attachment[]) => void} attached  a message
 *   the server saved carries these files: their chips go
 * @property {(text: string) => void} clearIf   empty the box if it holds exactly `text`
 * @property {() => void} focus
 */

import { createUploadTray } from './uploadtray.js';

/**
 * Wire the composer of the page under `root`.
 * @param {ParentNode} root
 * @param {{maxChars: number, maxUploadBytes?: number|null, notices: import('./notices.js').Notices,
 *   thread: ComposerThread}} options  maxUploadBytes: the server's limit, if the page knows it
 * @returns {Composer}
 */
export function createComposer(root, { maxChars, maxUploadBytes = null, notices, thread }) {
  const form = root.querySelector('[data-composer]');
  const input = root.querySelector('textarea[name="message"]');
  const sendButton = root.querySelector('[data-action="send"]');
  const stopButton = root.querySelector('[data-action="stop"]');
  const counter = root.querySelector('[data-counter]');
  const visionHint = root.querySelector('[data-vision-hint]');
  const files = createUploadTray(root, { maxBytes: maxUploadBytes, notices, onChange: () => sync() });
  const idsOf = (attachments) => attachments.map((a) => a.id);

  const draftKey = (threadId) => `chat-draft:${threadId ?? 'new'}`;

  // A draft survives reloads and thread switches, so nothing typed is lost. Storage can be
  // disabled or full; a draft is a convenience, never worth an error.
  function saveDraft(threadId = thread.id()) {
    try {
      if (input.value) sessionStorage.setItem(draftKey(threadId), input.value);
      else sessionStorage.removeItem(draftKey(threadId));
    } catch {
      // See above.
    }
  }

  function forgetDraft(threadId) {
    try {
      sessionStorage.removeItem(draftKey(threadId));
    } catch {
      // See above.
    }
  }

  function loadDraft(threadId) {
    try {
      return sessionStorage.getItem(draftKey(threadId)) ?? '';
    } catch {
      return '';
    }
  }

  function restore({ keepTyped = false } = {}) {
    // Text typed before this script ran is newer than any saved draft.
    if (!(keepTyped && input.value)) input.value = loadDraft(thread.id());
    syncInput();
  }

  // The count shows near the limit; over it the box is marked invalid and Send is off (an
  // Enter says why in the notice bar), so the server never has to refuse the length.
  const over = () => input.value.trim().length > maxChars;

  function syncInput() {
    const length = input.value.length;
    const tooLong = over();
    counter.hidden = length < maxChars * 0.9;
    counter.textContent = `${length.toLocaleString('en')} / ${maxChars.toLocaleString('en')}`;
    counter.classList.toggle('composer__counter--over', tooLong);
    counter.title = tooLong ? `${(length - maxChars).toLocaleString('en')} characters over the limit` : '';
    if (tooLong) input.setAttribute('aria-invalid', 'true');
    else input.removeAttribute('aria-invalid');
    input.style.height = 'auto';
    input.style.height = `${input.scrollHeight}px`;
    syncSend();
  }

  function syncSend() {
    const uploading = files.uploading();
    const tooLong = over();
    sendButton.disabled = !thread.canSend() || uploading || tooLong;
    let title = '';
    if (uploading) title = 'Wait for the files to upload';
    else if (tooLong) title = `The message is over the limit of ${maxChars.toLocaleString('en')} characters`;
    if (sendButton.title !== title) sendButton.title = title;
  }

  function setText(text) {
    input.value = text;
    saveDraft();
    syncInput();
  }

  async function send() {
    const text = input.value.trim();
    if (!text || !thread.canSend() || files.uploading()) return;
    if (text.length > maxChars) {
      notices.tooLarge(text.length);
      return;
    }
    notices.hide();
    // Clear now so anything typed while the thread is created is not wiped afterwards. The
    // files stay, held, until the server saves the message (attached) or refuses it (giveBack).
    setText('');
    const attachments = files.ready();
    files.hold(idsOf(attachments));
    try {
      await thread.send(text, { attachments });
    } catch (error) {
      files.release(idsOf(attachments));
      if (!input.value) input.value = text;
      syncInput();
      notices.failed(error, 'Could not create a thread', { retry: send });
    }
  }

  // Runs after every frame, so it only writes cheap properties and never reads layout.
  function sync() {
    syncSend();
    stopButton.hidden = !thread.busy();
    // An image for a model that cannot see: the server would refuse the message; say so first.
    const model = thread.model();
    const blind = Boolean(model) && model.vision === false && files.hasImage();
    const hint = blind ? `${model.label || model.id} can't see images: pick a model that can, or remove the image.` : '';
    if (visionHint.textContent !== hint) visionHint.textContent = hint;
    if (visionHint.hidden !== !blind) visionHint.hidden = !blind;
  }

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    send();
  });
  input.addEventListener('keydown', (event) => {
    // isComposing: Enter also confirms an IME composition (Japanese, Chinese, ...).
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
      event.preventDefault();
      send();
    } else if (event.key === 'Escape' && thread.busy()) {
      event.preventDefault();
      thread.stop();
    } else if (event.key === 'ArrowUp' && !input.value && thread.editLast()) {
      event.preventDefault();
    }
  });
  input.addEventListener('input', () => {
    saveDraft();
    syncInput();
  });
  stopButton.addEventListener('click', () => thread.stop());

  return {
    send,
    sync,
    switchThread(from, to, { carry = false } = {}) {
      if (carry) {
        forgetDraft(from);
        saveDraft(to);
      } else {
        saveDraft(from);
        input.value = loadDraft(to);
        syncInput();
      }
    },
    restore,
    giveBack(text, attachments = []) {
      files.release(idsOf(attachments));
      if (input.value) return;
      input.value = text;
      syncInput();
    },
    attached(attachments) {
      files.sent(idsOf(attachments));
    },
    clearIf(text) {
      if (input.value === text) setText('');
    },
    focus() {
      input.focus();
    },
  };
}
