// @ts-check
// A one-file React app on django-chat-react: one thread over the WebSocket (useThread), and a
// question over the streaming POST (useStreamingResponse). No build step: `make run`, then
// `node clients/react/example/serve.mjs` and open http://127.0.0.1:5173 (README.md there).
// Plain createElement rather than JSX, so the browser runs this file as it is.
import { createElement as h, useState } from 'react';
import { createRoot } from 'react-dom/client';

import { useStreamingResponse, useThread } from '../index.js';

/** Django's CSRF token, for the one REST call here (its cookie is readable by design). */
function csrfToken() {
  return document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/)?.[1] ?? '';
}

/** A new thread of the logged-in user: `POST /api/threads/`. */
async function newThread() {
  const response = await fetch('/api/threads/', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'X-CSRFToken': csrfToken() },
    body: '{}',
  });
  if (!response.ok) throw new Error(`POST /api/threads/ answered ${response.status}`);
  return /** @type {{id: string}} */ (await response.json()).id;
}

/** @param {{message: import('../index.js').ChatMessage}} props */
function Message({ message }) {
  const note = message.status === 'complete' ? '' : ` (${message.status})`;
  return h('p', { 'data-role': message.role, 'data-status': message.status },
    h('b', null, message.role === 'user' ? 'You' : 'Assistant'), `${note}: `, message.content);
}

/**
 * One thread over its WebSocket: reload the page mid-reply and it carries on.
 * @param {{threadId: string}} props
 */
function Thread({ threadId }) {
  const thread = useThread(threadId);
  const [text, setText] = useState('');
  if (thread.fatal === 4401) return h('a', { href: '/accounts/login/?next=/' }, 'Log in');
  const last = thread.messages.at(-1);
  /** @param {import('react').FormEvent} event */
  const submit = (event) => {
    event.preventDefault();
    if (text.trim() && thread.send(text)) setText('');
  };
  return h('section', null,
    h('p', { 'data-connection': thread.connection }, `Connection: ${thread.connection}`),
    thread.loading ? h('p', null, 'Loading…') : null,
    ...thread.messages.map((message) => h(Message, { key: message.id, message })),
    thread.error ? h('p', { role: 'alert' }, `${thread.error.kind}: ${thread.error.message}`) : null,
    h('form', { onSubmit: submit },
      h('textarea', {
        name: 'message', value: text, onChange: (e) => setText(/** @type {HTMLTextAreaElement} */ (e.target).value),
      }),
      thread.busy
        ? h('button', { type: 'button', onClick: thread.stop }, 'Stop')
        : h('button', { type: 'submit' }, 'Send'),
      last?.role === 'assistant' && !thread.busy
        ? h('button', { type: 'button', onClick: () => thread.regenerate() }, 'Regenerate')
        : null,
      last?.truncated && !thread.busy
        ? h('button', { type: 'button', onClick: () => thread.continue(last.id) }, 'Continue')
        : null));
}

/** One question over `POST /api/stream/message`, for apps without WebSockets. */
function AskOnce() {
  const { response, isStreaming, error, send, abort } = useStreamingResponse();
  const [text, setText] = useState('');
  return h('section', null,
    h('h2', null, 'Over HTTP'),
    h('input', { value: text, onChange: (e) => setText(e.target.value) }),
    isStreaming
      ? h('button', { onClick: abort }, 'Stop reading')
      : h('button', { onClick: () => send(text) }, 'Ask'),
    h('p', null, response),
    error ? h('p', { role: 'alert' }, error.message) : null);
}

function App() {
  const [threadId, setThreadId] = useState(() => location.hash.slice(1) || null);
  const open = async () => {
    const id = await newThread();
    location.hash = id;
    setThreadId(id);
  };
  return h('main', null,
    h('h1', null, 'django-chat-react'),
    h('button', { onClick: open }, 'New thread'),
    threadId ? h(Thread, { key: threadId, threadId }) : h('p', null, 'Start a thread.'),
    h(AskOnce));
}

const root = document.getElementById('root');
if (root) createRoot(root).render(h(App));
