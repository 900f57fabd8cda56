/**
 * One reply over HTTP: `POST /api/stream/message` answers with server-sent events, read here
 * with fetch's stream reader (no EventSource: it cannot POST). Each event's `data:` is one
 * frame, the same as on the WebSocket (docs/protocol.md, "Server-sent events").
 *
 * A stream that breaks before the reply's end is asked for again with the same body: the
 * same `client_id` starts nothing new, the server sends what the reply said so far, then the
 * rest, and the caller's reducer drops what it has already applied (by `seq`).
 */
import { backoffDelay } from './chat.js';

/**
 * A server-sent events parser: `feed()` it text as it comes, in chunks cut anywhere; it
 * keeps the unfinished line and calls `onEvent` once per event, at its blank line.
 * Lines end with LF or CRLF (the server writes LF); comments (`: heartbeat`) are skipped.
 * @param {(event: {data: string, id: string|null, event: string}) => void} onEvent
 * @returns {{feed: (text: string) => void, reset: () => void}}
 */
export function createEventParser(onEvent) {
  let partial = '';
  let data = [];
  let id = null;
  let event = '';

  function reset() {
    partial = '';
    data = [];
    id = null;
    event = '';
  }

  function line(text) {
    if (text === '') {
      if (data.length) onEvent({ data: data.join('\n'), id, event: event || 'message' });
      data = [];
      event = '';
      return;
    }
    if (text.startsWith(':')) return;
    const colon = text.indexOf(':');
    const field = colon === -1 ? text : text.slice(0, colon);
    let value = colon === -1 ? '' : text.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') data.push(value);
    else if (field === 'id') id = value;
    else if (field === 'event') event = value;
  }

  return {
    feed(text) {
      partial += text;
      let end = partial.indexOf('\n');
      while (end !== -1) {
        line(partial.slice(0, end).replace(/\r$/, ''));
        partial = partial.slice(end + 1);
        end = partial.indexOf('\n');
      }
    },
    reset,
  };
}

/**
 * Why a stream could not be had: a refusal (an HTTP `status` with the server's error frame
 * as `frame`), or the network (no `status`) after the retries ran out.
 */
export class StreamError extends Error {
  /**
   * @param {string} message
   * @param {{code: string, status?: number, recoverable?: boolean, frame?: object}} details
   */
  constructor(message, { code, status, recoverable, frame }) {
    super(message);
    this.name = 'StreamError';
    this.code = code;
    if (status !== undefined) this.status = status;
    if (recoverable !== undefined) this.recoverable = recoverable;
    if (frame !== undefined) this.frame = frame;
  }
}

async function refusal(response) {
  const text = await response.text().catch(() => '');
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {
    // Not JSON (a proxy's page): the status says enough.
  }
  // An engine refusal is an error frame; a bad credential or a thread not found is `{detail}`.
  const frame = body?.type === 'error' ? body : null;
  const code = frame?.code ?? (response.status === 404 ? 'not_found' : response.status === 401 || response.status === 403 ? 'unauthenticated' : 'bad_request');
  const message = frame?.message ?? body?.detail ?? (response.statusText || `Request failed (${response.status})`);
  return new StreamError(message, { code, status: response.status, recoverable: frame?.recoverable, frame: frame ?? undefined });
}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(timer);
      reject(signal.reason);
    }, { once: true });
  });
}

/** Whether a frame ends the reply the stream is about: `complete`, or an `error` naming it. */
function ends(frame) {
  return frame.message_id != null && (frame.type === 'complete' || frame.type === 'error');
}

async function streamOnce({ url, init, fetchImpl, onFrame, onThread }) {
  const response = await fetchImpl(url, init);
  if (!response.ok) throw await refusal(response);
  const thread = response.headers.get('X-Thread-Id');
  if (thread) onThread(thread);
  let ended = false;
  let broken = false;
  const parser = createEventParser(({ data }) => {
    if (ended || broken) return;
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }
    // The stream's own failure: the reply goes on, and asking again resumes it.
    if (frame?.type === 'error' && frame.message_id == null) {
      broken = true;
      return;
    }
    onFrame(frame);
    if (ends(frame)) ended = true;
  });
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  try {
    while (!ended && !broken) {
      const { done, value } = await reader.read();
      if (done) break;
      parser.feed(decoder.decode(value, { stream: true }));
    }
  } finally {
    if (ended || broken) reader.cancel().catch(() => {});
  }
  return ended;
}

/**
 * Send a message and hand each frame of its reply to `onFrame` as it comes, until the reply
 * ends. A stream that breaks (the network, a proxy, the stream's own `internal` error) is
 * asked for again after a backoff, with the same `client_id` and the thread the first answer
 * named; a refusal (any HTTP error) is not, and neither is a first request that got no
 * answer at all when no thread was named (the server may have made one; send again).
 * Closing the stream never stops the reply; only a socket's `stop` does.
 * @param {object} options
 * @param {{message: string, client_id: string, thread_id?: string} & Record<string, unknown>} options.body
 * @param {string} [options.baseUrl]  the product's origin, when this page is elsewhere
 * @param {string} [options.clientSecret]  sent as a Bearer token (else the session cookie)
 * @param {typeof fetch} [options.fetch]
 * @param {AbortSignal} [options.signal]  stops reading (and retrying); the reply goes on
 * @param {(frame: object) => void} options.onFrame
 * @param {(threadId: string) => void} [options.onThread]  the thread, from `X-Thread-Id`
 * @param {(attempt: number) => void} [options.onRetry]
 * @param {number} [options.retries]  asks after the first (default 4)
 * @param {{backoffBaseMs?: number, backoffCapMs?: number}} [options.timing]
 * @returns {Promise<{threadId: string|null}>} once the reply has ended
 * @throws {StreamError} a refusal, or the network after the retries; the signal's reason when aborted
 */
export async function streamMessage({
  body,
  baseUrl = '',
  clientSecret,
  fetch: fetchImpl = globalThis.fetch,
  signal,
  onFrame,
  onThread = () => {},
  onRetry = () => {},
  retries = 4,
  timing = {},
}) {
  const url = `${baseUrl.replace(/\/$/, '')}/api/stream/message`;
  const headers = { 'Content-Type': 'application/json', Accept: 'text/event-stream' };
  if (clientSecret) headers.Authorization = `Bearer ${clientSecret}`;
  let threadId = body.thread_id ?? null;
  let answered = false;
  for (let attempt = 0; ; attempt += 1) {
    const init = {
      method: 'POST',
      headers,
      body: JSON.stringify(threadId ? { ...body, thread_id: threadId } : body),
      credentials: clientSecret ? 'omit' : 'same-origin',
      signal,
    };
    let lastError = null;
    try {
      const ended = await streamOnce({
        url,
        init,
        fetchImpl,
        onFrame,
        onThread: (id) => {
          answered = true;
          threadId = id;
          onThread(id);
        },
      });
      if (ended) return { threadId };
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      if (error instanceof StreamError) throw error;
      lastError = error;
    }
    if (!threadId || attempt >= retries) {
      const why = answered ? 'The stream broke before the reply ended' : 'Could not reach the server';
      throw new StreamError(lastError?.message ? `${why}: ${lastError.message}` : `${why}.`, { code: 'network', recoverable: true });
    }
    onRetry(attempt + 1);
    await sleep(backoffDelay(attempt, Math.random, timing.backoffBaseMs ?? 500, timing.backoffCapMs ?? 8000), signal);
  }
}
