/**
 * A share's page (`/s/<token>/`): the snapshot the server embedded (`#share-data`, the same
 * object as `GET /api/shares/<token>/`), drawn as the chat draws a thread, read-only. No
 * socket and no API call: the page has everything it shows. Model text goes through
 * richtext.js (markdown sanitized by DOMPurify, code blocks with a copy button); user text
 * and tool steps are set as text; files link to the share's own address for them.
 *
 * @typedef {{name: string, status: string}} SharedStep
 * @typedef {{name: string, mime_type: string, size: number, kind: string, url: string}} SharedAttachment
 * @typedef {{role: string, content: string, created_at: string, steps?: SharedStep[],
 *   attachments?: SharedAttachment[]}} SharedMessage
 */
import { buildAttachments } from './attachmentview.js';
import { el } from './dom.js';
import { copyText, createRichText } from './richtext.js';

// The reader is not the one who wrote: "User", not the chat's "You".
const ROLE_LABELS = { user: 'User', assistant: 'Assistant', system: 'System' };
const STEP_MARKS = { done: '✓', error: '✕', cancelled: '–', running: '…' };
const STEP_STATES = { done: '', error: 'failed', cancelled: 'cancelled', running: 'unfinished' };

/**
 * A tool step as a share shows it: its name and how it ended (no arguments, no output).
 * @param {SharedStep} step
 * @returns {HTMLElement}
 */
function buildStep(step) {
  const node = el('div', `step step--${step.status}`);
  node.dataset.step = '';
  node.dataset.stepStatus = step.status;
  const line = el('div', 'step__line');
  const state = STEP_STATES[step.status] ?? step.status;
  line.append(
    el('span', 'step__mark', STEP_MARKS[step.status] ?? ''),
    el('span', 'step__name', step.name),
    el('span', 'step__state', state ? ` ${state}` : ''),
  );
  node.append(line);
  return node;
}

/**
 * One message of the snapshot, with the chat's classes and page hooks (`data-role`,
 * `data-status`, `[data-content]`, `[data-attachment-id]`).
 * @param {SharedMessage} msg
 * @returns {HTMLElement}
 */
export function buildSharedMessage(msg) {
  const root = el('article', `message message--${msg.role}`);
  root.dataset.role = msg.role;
  root.dataset.status = 'complete';
  const head = el('div', 'message__role', ROLE_LABELS[msg.role] ?? msg.role);
  const parts = [head];
  if (msg.steps?.length) {
    const steps = el('div', 'message__steps');
    steps.dataset.steps = '';
    steps.append(...msg.steps.map(buildStep));
    parts.push(steps);
  }
  const content = el('div', 'message__content');
  content.dataset.content = '';
  if (msg.role === 'assistant') {
    content.classList.add('markdown');
    createRichText(content).update(msg.content, true);
  } else {
    content.textContent = msg.content;
  }
  parts.push(content);
  if (msg.attachments?.length) {
    const files = el('div', 'message__files');
    files.dataset.attachments = '';
    // A shared file has no id of its own in the snapshot: its address ends with one.
    files.append(...buildAttachments(msg.attachments.map((file) => ({ ...file, id: file.url.split('/').pop() }))));
    parts.push(files);
  }
  root.append(...parts);
  return root;
}

function start() {
  const data = JSON.parse(document.getElementById('share-data').textContent);
  const list = document.querySelector('[data-messages]');
  list.replaceChildren(...data.messages.map(buildSharedMessage));
  list.addEventListener('click', async (event) => {
    const copy = event.target.closest('[data-copy-code]');
    if (!copy) return;
    const code = copy.closest('.codeblock')?.querySelector('code');
    const ok = await copyText(code?.textContent ?? '');
    copy.textContent = ok ? 'Copied' : 'Copy failed';
    setTimeout(() => { copy.textContent = 'Copy'; }, 1200);
  });
  // Tests and automation wait for this.
  document.documentElement.dataset.ready = 'true';
}

start();
