/**
 * React hooks for the chat product, on the chat page's own client modules
 * (static/chat/protocol.js, connection.js, client.js). Types: index.d.ts and the generated
 * protocol.d.ts. See README.md.
 */
export { useThread } from './src/use-thread.js';
export { useStreamingResponse } from './src/use-streaming-response.js';
export { threadView } from './src/view.js';
export { createEventParser, streamMessage, StreamError } from './src/stream.js';
export { frameScheduler } from './src/schedule.js';
