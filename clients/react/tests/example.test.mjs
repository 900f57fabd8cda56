// The example app (example/app.js) rendered by React in jsdom over a fake socket, and its
// server (example/serve.mjs) in front of a stand-in product. Run with
// `node --test clients/react/tests/`.
import './dom.mjs';

import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, test } from 'node:test';

import { act, fireEvent, screen, waitFor } from '@testing-library/react';

import { exampleServer } from '../example/serve.mjs';
import { FakeSocket } from './fake-socket.mjs';

const REPLY = 'a1a1a1a1-0000-4000-8000-000000000001';

test('the example app follows the thread in the URL, sends, streams and stops', async () => {
  FakeSocket.reset();
  globalThis.WebSocket = FakeSocket;
  const requests = [];
  globalThis.fetch = async (url) => {
    requests.push(String(url));
    return new Response(JSON.stringify({ next: null, previous: null, results: [] }), { headers: { 'Content-Type': 'application/json' } });
  };
  window.location.hash = '#t1';
  document.body.innerHTML = '<div id="root"></div>';
  await act(async () => {
    await import('../example/app.js');
  });
  await waitFor(() => assert.equal(FakeSocket.all.length, 1));
  const socket = FakeSocket.latest();
  assert.equal(socket.url, 'ws://chat.test/ws/threads/t1/');
  assert.deepEqual(requests, ['/api/threads/t1/messages/']);
  act(() => socket.accept());
  await waitFor(() => screen.getByText('Connection: open'));

  fireEvent.change(document.querySelector('textarea[name="message"]'), { target: { value: 'Hello' } });
  fireEvent.click(screen.getByText('Send'));
  await waitFor(() => assert.equal(socket.commands('start')[0]?.message, 'Hello'));
  const [start] = socket.commands('start');
  act(() => {
    socket.frame({ type: 'message', message: { id: 'u1', role: 'user', content: 'Hello', status: 'complete', client_id: start.client_id, created_at: '2024-01-01T00:00:00Z' } });
    socket.frame({ type: 'start', message_id: REPLY, seq: 0, model: 'm' });
    socket.frame({ type: 'token', message_id: REPLY, seq: 1, token: 'Hi there' });
  });
  await waitFor(() => assert.match(document.querySelector('[data-role="assistant"]').textContent, /Hi there/));
  fireEvent.click(screen.getByText('Stop'));
  assert.deepEqual(socket.commands('stop'), [{ command: 'stop' }]);
  act(() => socket.frame({ type: 'complete', message_id: REPLY, seq: 2, status: 'cancelled', metrics: null }));
  await waitFor(() => assert.equal(document.querySelector('[data-role="assistant"]').dataset.status, 'cancelled'));
  await waitFor(() => screen.getByText('Regenerate'));
  // A thread gone (4404) ends the connection and its timers, so the run can end.
  act(() => socket.drop(4404));
  await waitFor(() => screen.getByText('Connection: offline'));
});

function listen(server) {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server.address().port)));
}

test('the example server serves the app and passes the rest, WebSockets included, to the product', async () => {
  // A stand-in product: it answers with the Host it saw, and echoes a WebSocket's bytes.
  const product = http.createServer((request, response) => response.end(`${request.url} for ${request.headers.host}`));
  const upgraded = new Set();
  product.on('upgrade', (request, socket) => {
    upgraded.add(socket);
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Origin: ${request.headers.origin}\r\n\r\n`);
    socket.on('data', (data) => socket.write(data));
  });
  const productPort = await listen(product);
  const example = exampleServer({ target: `http://127.0.0.1:${productPort}` });
  const port = await listen(example);
  after(() => {
    for (const server of [example, product]) {
      server.close();
      server.closeAllConnections();
    }
    for (const socket of upgraded) socket.destroy();
  });
  const base = `http://127.0.0.1:${port}`;

  const shell = await (await fetchReal(`${base}/`)).text();
  assert.match(shell, /"react":"https:\/\/esm\.sh\/react@19\.\d+\.\d+"/);
  assert.match(shell, /src="\/clients\/react\/example\/app\.js"/);
  const app = await fetchReal(`${base}/clients/react/index.js`);
  assert.equal(app.headers.get('content-type'), 'text/javascript; charset=utf-8');
  assert.equal((await fetchReal(`${base}/clients/react/..%2f..%2fstatic%2fchat%2fclient.js`)).status, 404);
  assert.equal((await fetchReal(`${base}/clients/react/package.json`)).status, 404);
  assert.equal(await (await fetchReal(`${base}/api/threads/`)).text(), `/api/threads/ for 127.0.0.1:${port}`);

  const echoed = await new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => {
      socket.write(`GET /ws/threads/t1/ HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nOrigin: ${base}\r\n\r\n`);
    });
    let got = '';
    socket.on('data', (data) => {
      got += data;
      if (got.includes('\r\n\r\n') && !got.includes('ping')) socket.write('ping');
      if (got.endsWith('ping')) {
        socket.destroy();
        resolve(got);
      }
    });
    socket.on('error', reject);
  });
  assert.match(echoed, /^HTTP\/1\.1 101/);
  assert.match(echoed, new RegExp(`X-Origin: ${base}`));
});

// Node's own fetch: the first test replaced the global one.
const nativeFetch = globalThis.fetch;
function fetchReal(url) {
  return nativeFetch(url);
}
