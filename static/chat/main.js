// The chat page: reads the server's config and wires the page's parts together. Each part
// owns its own state and elements (see each module's header):
//   notices.js     the notice bar and the screen-reader announcer
//   sidebar.js     the thread list, search, rename/delete, tokens left, phone sidebar
//   composer.js    the message box, Send/Stop, the counter, drafts, the files to send
//   threadview.js  the open thread: its client, messages, paging, header, connection
// The parts call each other only through the callbacks given here.
import { createComposer } from './composer.js';
import { createNotices } from './notices.js';
import { createSidebar } from './sidebar.js';
import { createThreadView } from './threadview.js';

const config = JSON.parse(document.getElementById('chat-config').textContent);
const maxChars = config.maxMessageChars ?? 16000;

// `thread` is made last (it needs the others); the callbacks below only run after that.
const notices = createNotices(document, { maxChars });
const sidebar = createSidebar(document, {
  threads: config.threads ?? [],
  notices,
  openThread: {
    id: () => thread.id(),
    show: (threadId) => thread.select(threadId, { push: true }),
    home: () => thread.home({ push: true }),
    titled: () => thread.syncHeader(),
  },
});
const composer = createComposer(document, {
  maxChars,
  // Not in every server's config: without it, only the server checks a file's size.
  maxUploadBytes: config.maxUploadBytes ?? null,
  notices,
  thread: {
    id: () => thread.id(),
    canSend: () => thread.canSend(),
    busy: () => thread.busy(),
    model: () => thread.model(),
    send: (text, options) => thread.send(text, options),
    stop: () => thread.stop(),
    editLast: () => thread.editLast(),
  },
});
const thread = createThreadView(document, { config, maxChars, notices, sidebar, composer });

function newThread() {
  notices.hide();
  thread.home({ push: true });
}

document.addEventListener('keydown', (event) => {
  if (event.key === 'Escape') {
    sidebar.close();
    thread.closeMenu();
  }
  if ((event.ctrlKey || event.metaKey) && event.shiftKey && event.key.toLowerCase() === 'o') {
    event.preventDefault();
    newThread();
  }
});
document.addEventListener('visibilitychange', () => {
  // The client re-checks its own thread; the sidebar catches up with other tabs' changes.
  if (document.visibilityState === 'visible') {
    sidebar.refresh();
    sidebar.refreshUsage();
  }
});
window.addEventListener('popstate', () => thread.route());

thread.start();
sidebar.refreshUsage();
// Tests and automation wait for this before they type.
document.documentElement.dataset.ready = 'true';
