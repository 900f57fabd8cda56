// Serve the example app (app.js) against a running product, on one origin: this server
// answers `/` and the package's own files, and passes everything else (the API, the
// WebSocket, /static/, the login page) to the product, Host header and all, so the session
// cookie, CSRF and the WebSocket's Origin check hold as they do on the product's own page.
//
//   make run                                   # the product at http://127.0.0.1:8000
//   node clients/react/example/serve.mjs       # the example at http://127.0.0.1:5173
//   node clients/react/example/serve.mjs --port 5173 --target http://127.0.0.1:8000
//
// The browser loads React from esm.sh (versions pinned to the repository's package.json).
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import { dirname, extname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const PACKAGE = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const TYPES = { '.js': 'text/javascript; charset=utf-8', '.mjs': 'text/javascript; charset=utf-8' };

async function page() {
  const { devDependencies: pinned } = JSON.parse(await readFile(join(PACKAGE, '../../package.json'), 'utf8'));
  const react = `react@${pinned.react}`;
  const imports = {
    react: `https://esm.sh/${react}`,
    'react-dom/client': `https://esm.sh/react-dom@${pinned['react-dom']}/client?deps=${react}`,
  };
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>django-chat-react example</title>
<script type="importmap">${JSON.stringify({ imports })}</script>
</head>
<body>
<div id="root"></div>
<script type="module" src="/clients/react/example/app.js"></script>
</body>
</html>
`;
}

/** The package's file for a `/clients/react/...` path, or null: nothing outside it, only JS. */
function packageFile(pathname) {
  const file = resolve(PACKAGE, `.${decodeURIComponent(pathname.slice('/clients/react'.length))}`);
  if (!file.startsWith(PACKAGE + sep) || !(extname(file) in TYPES)) return null;
  return file;
}

/**
 * The example's server.
 * @param {{target: string}} options  the product's origin
 * @returns {http.Server}
 */
export function exampleServer({ target }) {
  const upstream = new URL(target);
  const port = Number(upstream.port || 80);

  const server = http.createServer(async (request, response) => {
    const { pathname } = new URL(request.url ?? '/', 'http://example');
    if (request.method === 'GET' && (pathname === '/' || pathname === '/index.html')) {
      response.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
      response.end(await page());
      return;
    }
    if (pathname.startsWith('/clients/react/')) {
      const file = packageFile(pathname);
      const body = file ? await readFile(file).catch(() => null) : null;
      if (!file || !body) {
        response.writeHead(404).end();
        return;
      }
      response.writeHead(200, { 'Content-Type': TYPES[extname(file)], 'Cache-Control': 'no-store' });
      response.end(body);
      return;
    }
    const forwarded = http.request(
      { host: upstream.hostname, port, method: request.method, path: request.url, headers: request.headers },
      (answer) => {
        response.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(response);
      },
    );
    forwarded.on('error', () => {
      if (!response.headersSent) response.writeHead(502, { 'Content-Type': 'text/plain' });
      response.end(`The product does not answer at ${target}: is \`make run\` running?\n`);
    });
    request.pipe(forwarded);
  });

  // A WebSocket: hand the upgrade request to the product as it came, then pipe both ways.
  server.on('upgrade', (request, socket, head) => {
    const product = net.connect(port, upstream.hostname, () => {
      const lines = [`${request.method} ${request.url} HTTP/${request.httpVersion}`];
      for (let i = 0; i < request.rawHeaders.length; i += 2) lines.push(`${request.rawHeaders[i]}: ${request.rawHeaders[i + 1]}`);
      product.write(`${lines.join('\r\n')}\r\n\r\n`);
      if (head.length) product.write(head);
      product.pipe(socket);
      socket.pipe(product);
    });
    // Either side gone ends the other: a socket is never left half open.
    product.on('close', () => socket.destroy());
    socket.on('close', () => product.destroy());
    product.on('error', () => socket.destroy());
    socket.on('error', () => product.destroy());
  });
  return server;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const option = (name, fallback) => {
    const at = process.argv.indexOf(`--${name}`);
    return at === -1 ? fallback : process.argv[at + 1];
  };
  const port = Number(option('port', '5173'));
  const target = option('target', 'http://127.0.0.1:8000');
  exampleServer({ target }).listen(port, '127.0.0.1', () => {
    console.log(`The example at http://127.0.0.1:${port}/ (log in there), on the product at ${target}`);
  });
}
