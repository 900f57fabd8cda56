// A WebSocket the test plays the server of, as tests/js/client.test.mjs does for the page.
export class FakeSocket {
  static OPEN = 1;
  static all = [];

  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.readyState = 0;
    this.sent = [];
    this.closedWith = null;
    FakeSocket.all.push(this);
  }

  static reset() {
    FakeSocket.all = [];
  }

  static latest() {
    return FakeSocket.all.at(-1);
  }

  send(data) {
    this.sent.push(JSON.parse(data));
  }

  close(code) {
    this.readyState = 3;
    this.closedWith = code;
  }

  /** Server side: open and send `ready` with this snapshot of a reply in flight. */
  accept(active = null) {
    this.readyState = FakeSocket.OPEN;
    this.onopen?.();
    this.frame({ type: 'ready', thread_id: 't', active });
  }

  frame(frame) {
    this.onmessage?.({ data: JSON.stringify({ ts: 1, ...frame }) });
  }

  /** The connection dropped without a close frame (wifi gone, a proxy restarted). */
  drop(code = 1006) {
    this.readyState = 3;
    this.onclose?.({ code });
  }

  commands(name) {
    return this.sent.filter((c) => c.command === name);
  }
}
