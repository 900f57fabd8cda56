/**
 * One WebSocket connection to one thread: heartbeats, dead-socket detection, reconnect
 * with backoff, an outbox for commands sent while not ready, and one dispose().
 *
 * @typedef {'connecting'|'open'|'reconnecting'|'offline'} ConnectionState
 * @typedef {object} Connection
 * @property {(command: object) => void} send  sends now if ready, else after the next `ready`
 * @property {() => void} resync                asks for a fresh `ready` (no-op while not open)
 * @property {() => void} check                 open: resync (the page may have slept); else reconnect now
 * @property {() => ConnectionState} state
 * @property {() => void} dispose               closes for good; no callback fires afterwards
 * @typedef {object} Timing
 * @property {number} [heartbeatMs]  how often to send a heartbeat
 * @property {number} [deadAfterMs]  silence (no frame at all) after which the socket is dead
 * @property {number} [backoffBaseMs]
 * @property {number} [backoffCapMs]
 */

// A heartbeat is answered at once, so two missed answers and some slack mean a dead socket.
const HEARTBEAT_MS = 10_000;
const DEAD_AFTER_MS = 25_000;
const BACKOFF_BASE_MS = 500;
const BACKOFF_CAP_MS = 15_000;
// Close codes after which retrying cannot help (docs/protocol.md, "Close codes").
const FATAL_CODES = new Set([4401, 4404]);
const TOO_MANY_SOCKETS = 4429;

/**
 * Build the WebSocket URL of a thread from the page's location.
 * @param {string} threadId
 * @param {{protocol: string, host: string}} [loc] defaults to window.location
 * @returns {string}
 */
export function threadSocketUrl(threadId, loc = globalThis.location) {
  const scheme = loc.protocol === 'https:' ? 'wss' : 'ws';
  return `${scheme}://${loc.host}/ws/threads/${encodeURIComponent(threadId)}/`;
}

/**
 * The user's socket (their thread list, for a page with no thread open) from the page's location.
 * @param {{protocol: string, host: string}} [loc] defaults to window.location
 * @returns {string}
 */
export function userSocketUrl(loc = globalThis.location) {
  return `${loc.protocol === 'https:' ? 'wss' : 'ws'}://${loc.host}/ws/user/`;
}

/**
 * Delay before reconnect attempt `attempt` (0-based): exponential backoff with full jitter,
 * so many tabs dropped by one server restart do not come back in lockstep.
 * @param {number} attempt
 * @param {() => number} [random]
 * @returns {number} milliseconds
 */
export function backoffDelay(attempt, random = Math.random, base = BACKOFF_BASE_MS, cap = BACKOFF_CAP_MS) {
  return random() * Math.min(cap, base * 2 ** attempt);
}

/**
 * Connect to a thread's WebSocket and keep it connected until dispose().
 * @param {object} options
 * @param {string} options.threadId
 * @param {(frame: object) => void} options.onFrame  every parsed server frame, in order
 * @param {(state: ConnectionState) => void} [options.onState]
 * @param {(code: number) => void} [options.onFatal] 4401 (log in again) or 4404 (no such thread)
 * @param {(code: number) => void} [options.onRefused] 4429 (too many sockets for this user):
 *   the connection retries with backoff meanwhile
 * @param {typeof WebSocket} [options.WebSocketImpl] injectable for tests
 * @param {Timing} [options.timing]
 * @param {string} [options.url] defaults to threadSocketUrl(threadId)
 * @param {string[]} [options.protocols] WebSocket subprotocols (a client secret travels as one)
 * @returns {Connection}
 */
export function connectThread({
  threadId,
  onFrame,
  onState = () => {},
  onFatal = () => {},
  onRefused = () => {},
  WebSocketImpl = globalThis.WebSocket,
  timing = {},
  url = threadSocketUrl(threadId),
  protocols = undefined,
}) {
  const heartbeatMs = timing.heartbeatMs ?? HEARTBEAT_MS;
  const deadAfterMs = timing.deadAfterMs ?? DEAD_AFTER_MS;
  const backoffBaseMs = timing.backoffBaseMs ?? BACKOFF_BASE_MS;
  const backoffCapMs = timing.backoffCapMs ?? BACKOFF_CAP_MS;
  let socket = null;
  let current = null;
  let ready = false;
  let disposed = false;
  // Set by dispose() or a fatal close: nothing may open a socket again.
  let halted = false;
  let attempt = 0;
  let everOpened = false;
  let retryTimer = null;
  let heartbeatTimer = null;
  let deadTimer = null;
  /** @type {object[]} */
  const outbox = [];

  function setState(next) {
    if (next === current || disposed) return;
    current = next;
    onState(next);
  }

  function clearTimers() {
    clearTimeout(retryTimer);
    clearInterval(heartbeatTimer);
    clearTimeout(deadTimer);
    retryTimer = heartbeatTimer = deadTimer = null;
  }

  // Detaching first means a stale socket's late events can never act on its successor.
  function dropSocket(code = 1000) {
    const old = socket;
    socket = null;
    ready = false;
    clearTimers();
    if (!old) return;
    old.onopen = old.onmessage = old.onclose = old.onerror = null;
    try {
      old.close(code);
    } catch {
      // Already closing or never opened: nothing left to release.
    }
  }

  // Any frame proves the socket alive. A half-open TCP connection (wifi gone, laptop
  // asleep) may never fire `close`, so silence is the only reliable signal.
  function armDeadTimer() {
    clearTimeout(deadTimer);
    deadTimer = setTimeout(() => reconnectSoon(), deadAfterMs);
  }

  function open() {
    if (halted) return;
    if (globalThis.navigator && navigator.onLine === false) {
      setState('offline');
      return;
    }
    setState(everOpened ? 'reconnecting' : 'connecting');
    const ws = protocols ? new WebSocketImpl(url, protocols) : new WebSocketImpl(url);
    socket = ws;
    // A handshake to a vanished host can hang for minutes; give up on it like a silent socket.
    armDeadTimer();
    ws.onopen = () => {
      heartbeatTimer = setInterval(() => rawSend({ command: 'heartbeat' }), heartbeatMs);
      armDeadTimer();
    };
    ws.onmessage = (event) => {
      armDeadTimer();
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      if (frame?.type === 'ready') onReady(frame);
      else onFrame(frame);
    };
    ws.onclose = (event) => {
      if (FATAL_CODES.has(event.code)) {
        dropSocket();
        setState('offline');
        halted = true;
        onFatal(event.code);
        return;
      }
      if (event.code === TOO_MANY_SOCKETS) onRefused(event.code);
      reconnectSoon();
    };
  }

  function onReady(frame) {
    ready = true;
    everOpened = true;
    attempt = 0;
    setState('open');
    // The reducer sees the snapshot before queued commands can produce frames of their own.
    onFrame(frame);
    while (canSend() && outbox.length) rawSend(outbox.shift());
  }

  function reconnectSoon() {
    dropSocket(4000);
    if (halted) return;
    if (globalThis.navigator && navigator.onLine === false) {
      setState('offline');
      return;
    }
    setState(everOpened ? 'reconnecting' : 'connecting');
    retryTimer = setTimeout(open, backoffDelay(attempt, Math.random, backoffBaseMs, backoffCapMs));
    attempt += 1;
  }

  function canSend() {
    return ready && socket !== null && socket.readyState === WebSocketImpl.OPEN;
  }

  function rawSend(command) {
    if (socket && socket.readyState === WebSocketImpl.OPEN) socket.send(JSON.stringify(command));
  }

  function onOnline() {
    if (halted || canSend()) return;
    dropSocket();
    attempt = 0;
    open();
  }

  // The socket is dead without network even if the browser has not noticed yet.
  function onOffline() {
    if (halted) return;
    dropSocket();
    setState('offline');
  }

  globalThis.addEventListener?.('online', onOnline);
  globalThis.addEventListener?.('offline', onOffline);
  open();

  return {
    send(command) {
      // A socket the server is closing looks ready until its close event; queue rather than lose.
      if (canSend()) rawSend(command);
      else outbox.push(command);
    },
    resync() {
      if (canSend()) rawSend({ command: 'resync' });
    },
    check() {
      // A tab in the background may have slept through frames or a dead socket: a socket
      // that looks open is asked for a fresh `ready`, anything else reconnects now.
      if (halted) return;
      if (canSend()) rawSend({ command: 'resync' });
      else onOnline();
    },
    state: () => current,
    dispose() {
      if (disposed) return;
      disposed = true;
      halted = true;
      globalThis.removeEventListener?.('online', onOnline);
      globalThis.removeEventListener?.('offline', onOffline);
      outbox.length = 0;
      dropSocket(1000);
    },
  };
}
