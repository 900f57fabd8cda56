// The hooks' types. The protocol's frames, commands and objects are generated into
// protocol.d.ts from the server's own definitions (python -m scripts.protocol_types).
import type {
  ErrorCode,
  ErrorDetail,
  FeedbackObject,
  Frame,
  Metrics,
  MessageObject,
  Step,
} from './protocol.js';

export type * from './protocol.js';

/**
 * `{"command":"continue","message_id"}`: extend a reply the provider cut at its token limit
 * (same message, its frames carry on its `seq`). Declared here until the server defines it
 * and protocol.d.ts carries it; a server without it answers `bad_request`.
 */
export interface ContinueCommand {
  command: 'continue';
  message_id: string;
}

/** The socket's state: `offline` also after a fatal close (see `fatal`). */
export type ConnectionState = 'connecting' | 'open' | 'reconnecting' | 'offline';

/** A message as the hooks show it: the server's message object, or a sent one not yet saved. */
export interface ChatMessage {
  /** The server's id; a message not yet saved has its `client_id` here. */
  id: string;
  role: MessageObject['role'];
  content: string;
  status: MessageObject['status'];
  client_id: string | null;
  created_at: string | null;
  model: string | null;
  metrics: Metrics | null;
  error: ErrorDetail | { code: string; message: string; recoverable?: boolean } | null;
  steps: readonly Step[];
  /** Replies only: the owner's rating (a `feedback` frame changes it), or null. */
  feedback?: FeedbackObject | null;
  /** Replies only: earlier messages not sent to the model, its context window being full. */
  history_left_out?: number;
  /** True until the server has saved it (sending, or refused: see `error`). */
  local?: boolean;
  /** The provider cut the reply at its token limit: `continue` extends it. */
  truncated?: boolean;
  /** The `seq` of the last frame applied: only on a reply followed live. */
  lastSeq?: number;
  /** Bumped when the content was replaced rather than appended to. */
  rev: number;
}

/** How a failure is shown: the error policy of the chat page (protocol.js `errorClass`). */
export type ErrorKind = 'network' | 'timeout' | 'server' | 'rate_limit' | 'limit' | 'request';

/** An error the hook met: a refused command, a reply that failed, or the network. */
export interface ClientError {
  /** A protocol error code, or the client's own: `network`, `too_many_sockets`, `load_failed`, ... */
  code: ErrorCode | 'network' | 'too_many_sockets' | 'load_failed' | 'not_found' | 'unauthenticated' | (string & {});
  message: string;
  kind: ErrorKind;
  /** Whether trying again as it is may help: the server's word when it sent one. */
  recoverable: boolean;
  /** The reply this error ended, or null for a refused command. */
  messageId: string | null;
  /** The unsent message a refused `start` left failed (it shows the refusal), if any. */
  refused?: string | null;
  /** The HTTP status, for a request that got an answer. */
  status?: number;
}

export interface Timing {
  heartbeatMs?: number;
  deadAfterMs?: number;
  backoffBaseMs?: number;
  backoffCapMs?: number;
}

/** The constructor of a WebSocket: the browser's, or one a test or a server runtime gives. */
export type WebSocketConstructor = {
  new (url: string, protocols?: string | string[]): WebSocket;
  readonly OPEN: number;
};

export interface ThreadOptions {
  /** The product's origin when this page is elsewhere, e.g. `https://chat.example.com`. */
  baseUrl?: string;
  /**
   * A client secret from `POST /api/chatkit/session`, for pages without the product's session
   * cookie: sent as the `auth.<secret>` subprotocol and as a Bearer token.
   */
  clientSecret?: string;
  /** Messages already known (oldest first): given, the hook loads no history itself. */
  messages?: MessageObject[];
  /** The newest page of the thread's messages; defaults to `GET /api/threads/<id>/messages/`. */
  loadMessages?: (threadId: string) => Promise<MessageObject[]>;
  WebSocketImpl?: WebSocketConstructor;
  timing?: Timing;
  /** The socket URL; defaults to `/ws/threads/<id>/` on `baseUrl` or this page's origin. */
  url?: string;
  /** Re-check the thread when the tab becomes visible again (default true). */
  watchVisibility?: boolean;
}

export interface ThreadView {
  threadId: string | null;
  /** The thread's messages, oldest first; unchanged ones keep their identity between views. */
  messages: readonly ChatMessage[];
  /** The reply streaming now, or null. */
  reply: ChatMessage | null;
  /** A reply runs or a command awaits its answer: a composer waits. */
  busy: boolean;
  /** null without a thread. */
  connection: ConnectionState | null;
  /** The history is still loading. */
  loading: boolean;
  /** The last error; the next command clears it. */
  error: ClientError | null;
  /** 4401 (log in again) or 4404 (no such thread): the hook stopped. */
  fatal: 4401 | 4404 | null;
}

export interface Thread extends ThreadView {
  /** Send a message (queued until the socket is ready); returns its client_id, null without a thread. */
  send(text: string): string | null;
  /** Stop the running reply, for every tab, whichever process runs it. */
  stop(): void;
  /** A new answer in place of the last finished reply; false when there is none. */
  regenerate(): boolean;
  /** Replace the last user message with `text` and ask again; false when it is not that message. */
  edit(messageId: string, text: string): boolean;
  /** Extend the last reply, cut by the token limit ({@link ContinueCommand}); false when it is not that reply. */
  continue(messageId: string): boolean;
  /** Send a refused message again (same client_id); false when it was not refused. */
  retry(messageId: string): boolean;
  /** Reconnect now (or, when connected, resync and refetch). */
  reconnect(): void;
}

/**
 * Follow one thread over its WebSocket: its messages, the running reply, the connection, and
 * the commands. At most one React update per animation frame.
 */
export function useThread(threadId: string | null | undefined, options?: ThreadOptions): Thread;

export interface StreamingOptions {
  /** The thread the first send goes to; default: a new thread, then the same one. */
  threadId?: string;
  baseUrl?: string;
  /** Sent as a Bearer token; without it, the session cookie (same origin). */
  clientSecret?: string;
  fetch?: typeof fetch;
  /** Asks again after a broken stream (default 4). */
  retries?: number;
  timing?: { backoffBaseMs?: number; backoffCapMs?: number };
}

export interface StreamingView {
  /** This hook's messages: each sent message and its reply, oldest first. */
  messages: readonly ChatMessage[];
  /** The reply to the last send, running or ended, or null before the first. */
  reply: ChatMessage | null;
  /** That reply's text so far. */
  response: string;
  isStreaming: boolean;
  error: ClientError | null;
  /** The thread the replies go to, once the server named it. */
  threadId: string | null;
}

export interface StreamingResponse extends StreamingView {
  /**
   * Send a message and stream its reply; resolves with the reply when the stream ends (null
   * when refused, aborted or already streaming). Never rejects: failures land in `error`.
   */
  send(text: string, options?: { threadId?: string }): Promise<ChatMessage | null>;
  /** Stop reading. The reply goes on and is saved: HTTP has no stop (a socket's `stop` does). */
  abort(): void;
}

/** Stream replies over `POST /api/stream/message` (server-sent events), for apps without WebSockets. */
export function useStreamingResponse(options?: StreamingOptions): StreamingResponse;

/** The immutable view of a protocol.js ThreadState that the hooks hand React. */
export function threadView(
  state: { messages: ChatMessage[] },
  since?: { previous?: Pick<ThreadView, 'messages' | 'reply' | 'busy'> | null; changed?: Set<string> },
): Pick<ThreadView, 'messages' | 'reply' | 'busy'>;

/** A server-sent events parser: feed it text in chunks; one call of `onEvent` per event. */
export function createEventParser(onEvent: (event: { data: string; id: string | null; event: string }) => void): {
  feed(text: string): void;
  reset(): void;
};

export class StreamError extends Error {
  code: string;
  status?: number;
  recoverable?: boolean;
  /** The server's error frame, for a refusal. */
  frame?: Frame;
}

/** One reply over `POST /api/stream/message`, each frame handed to `onFrame`; resumes a broken stream. */
export function streamMessage(options: {
  body: { message: string; client_id: string; thread_id?: string; time_zone?: string };
  baseUrl?: string;
  clientSecret?: string;
  fetch?: typeof fetch;
  signal?: AbortSignal;
  onFrame: (frame: Frame) => void;
  onThread?: (threadId: string) => void;
  onRetry?: (attempt: number) => void;
  retries?: number;
  timing?: { backoffBaseMs?: number; backoffCapMs?: number };
}): Promise<{ threadId: string | null }>;

/** At most one call of `flush` per animation frame. */
export function frameScheduler(flush: () => void): { request(): void; dispose(): void };
