// The chat page's own client modules, imported from static/chat/ and never copied here: the
// hooks run on the same reducer, connection and client as the page. This is the one file
// that names them; the published package carries them beside it (scripts/stage.mjs).
export { createChatClient, fetchNewestMessages } from '../../../static/chat/client.js';
export { backoffDelay } from '../../../static/chat/connection.js';
export {
  addLocalMessage,
  applyFrame,
  createThreadState,
  errorClass,
  isBusy,
  isTerminal,
  makeStart,
  mergeMessages,
} from '../../../static/chat/protocol.js';
