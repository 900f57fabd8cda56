// A fetch the test plays the server of: each request gets a stream of server-sent events the
// test writes (or breaks), or a refusal.
const encoder = new TextEncoder();

export const sse = (frame, id) => `${id === undefined ? '' : `id: ${id}\n`}data: ${JSON.stringify({ ts: 1, ...frame })}\n\n`;

export function fakeFetch() {
  const requests = [];
  const fetch = (url, init) => {
    const request = { url, init, body: JSON.parse(init.body) };
    requests.push(request);
    return new Promise((resolve, reject) => {
      request.fail = (error = new TypeError('fetch failed')) => reject(error);
      request.refuse = (status, body) => resolve(new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } }));
      request.open = (threadId = 't1') => {
        let controller;
        const body = new ReadableStream({ start(c) { controller = c; } });
        request.write = (text) => controller.enqueue(encoder.encode(text));
        request.end = () => controller.close();
        request.break = () => controller.error(new TypeError('network error'));
        // As fetch does: an abort errors the body being read.
        init.signal?.addEventListener('abort', () => controller.error(init.signal.reason));
        resolve(new Response(body, { status: 200, headers: { 'Content-Type': 'text/event-stream', 'X-Thread-Id': threadId } }));
      };
      init.signal?.addEventListener('abort', () => reject(init.signal.reason));
    });
  };
  return { fetch, requests, latest: () => requests.at(-1) };
}

/** Wait until `check()` holds (a few event-loop turns). */
export async function until(check, what = 'the condition') {
  for (let i = 0; i < 200; i += 1) {
    if (check()) return;
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  throw new Error(`timed out waiting for ${what}`);
}
