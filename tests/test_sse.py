"""Server-sent events over a real daphne: the seed's readers, EventSource resume, and a
Python client reading incrementally."""

import json
import uuid

import httpx
import pytest

from tests.browser import log_in
from tests.servers import TcpProxy, login

pytestmark = [pytest.mark.slow, pytest.mark.site({"dora": "dora-pw"})]

# The seed's ReadableStream reader (streaming-quick-reference.md), unchanged but for the URL
# and the message it sends: it splits each chunk on newlines and adds up `data.token`.
SEED_FETCH_READER = """async ([userInput]) => {
  let response = '';
  const setResponse = (update) => { response = update(response); };
  const res = await fetch('/api/stream/message', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ message: userInput }),
  });

  const reader = res.body?.getReader();
  const decoder = new TextDecoder();

  while (reader) {
    const { done, value } = await reader.read();
    if (done) break;

    const text = decoder.decode(value);
    const lines = text.split('\\n');

    for (const line of lines) {
      if (line.startsWith('data: ')) {
        const data = JSON.parse(line.slice(6));
        setResponse((prev) => prev + (data.token || ''));
      }
    }
  }
  return { status: res.status, response, thread: res.headers.get('X-Thread-Id') };
}"""


@pytest.fixture(scope="module")
def proxy(site):
    """The module's site behind a proxy that can drop every connection (`cut()`)."""
    proxy = TcpProxy([site.port]).start_in_thread()
    yield proxy
    proxy.stop()


@pytest.fixture
def page(browser, proxy):
    context = browser.new_context()
    page = context.new_page()
    log_in(page, proxy, "dora", "dora-pw")
    yield page
    context.close()


def saved(client: httpx.Client, thread_id: str) -> dict:
    return client.get(f"/api/threads/{thread_id}/messages/").json()["results"][-1]


def test_the_seeds_fetch_reader_accumulates_the_whole_reply(proxy, stub, page):
    tokens = ["Line one\n", "\n", "and *two*", ' with "quotes"', " and unicode é✓", "."] * 20
    stub.script("seed-reader", tokens=tokens, delay_ms=3)
    result = page.evaluate(SEED_FETCH_READER, ["seed-reader please"])
    assert result["status"] == 200
    assert result["response"] == "".join(tokens)
    client = login(proxy.url, "dora", "dora-pw")
    assert saved(client, result["thread"])["content"] == "".join(tokens)


def test_a_python_client_sees_tokens_while_the_reply_is_still_being_written(proxy, stub):
    stub.script("incremental", tokens=[f" t{i}" for i in range(100)], delay_ms=30)
    client = login(proxy.url, "dora", "dora-pw")
    frames, thread_id, status_at_first_token = [], None, None
    with client.stream(
        "POST",
        "/api/stream/message",
        json={"message": "incremental", "client_id": str(uuid.uuid4())},
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-accel-buffering"] == "no"
        thread_id = response.headers["x-thread-id"]
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            frames.append(json.loads(line[6:]))
            if frames[-1]["type"] == "token" and status_at_first_token is None:
                status_at_first_token = saved(client, thread_id)["status"]
    assert status_at_first_token == "streaming", "a token arrived before the reply ended"
    assert [f["type"] for f in frames[:2]] == ["message", "start"]
    assert frames[-1]["type"] == "complete"
    text = "".join(f.get("token", "") for f in frames)
    assert text == saved(client, thread_id)["content"] == "".join(f" t{i}" for i in range(100))


def test_a_retried_post_with_the_same_client_id_streams_the_same_reply_once(proxy, stub):
    stub.script("retry-me", tokens=["Only", " once"], delay_ms=5)
    client = login(proxy.url, "dora", "dora-pw")
    body = {"message": "retry-me", "client_id": str(uuid.uuid4())}

    def read() -> tuple[str, str]:
        with client.stream("POST", "/api/stream/message", json=body) as response:
            lines = [json.loads(x[6:]) for x in response.iter_lines() if x.startswith("data: ")]
            return response.headers["x-thread-id"], "".join(f.get("token", "") for f in lines)

    thread_id, first = read()
    body["thread_id"] = thread_id
    _, second = read()
    assert first == second == "Only once"
    roles = [m["role"] for m in client.get(f"/api/threads/{thread_id}/messages/").json()["results"]]
    assert roles == ["user", "assistant"]


def test_an_eventsource_cut_off_mid_reply_resumes_with_last_event_id_to_the_saved_text(
    proxy, stub, page
):
    tokens = [f" e{i}" for i in range(150)]
    stub.script("cut-me", tokens=tokens, delay_ms=20)
    client = login(proxy.url, "dora", "dora-pw")
    thread_id = client.post("/api/threads/", json={"title": "events"}).json()["id"]
    page.evaluate(
        """(threadId) => {
          window.log = { text: '', seqs: [], opens: 0, ends: 0 };
          const es = new EventSource(`/api/threads/${threadId}/events/`);
          es.onopen = () => { window.log.opens += 1; };
          es.onmessage = (e) => {
            const frame = JSON.parse(e.data);
            if (frame.type === 'token') {
              window.log.text += frame.token;
              window.log.seqs.push(frame.seq);
            }
            if (frame.type === 'complete') { window.log.ends += 1; }
          };
        }""",
        thread_id,
    )
    page.wait_for_function("() => window.log.opens === 1")
    with client.stream(
        "POST", "/api/stream/message", json={"message": "cut-me", "thread_id": thread_id}
    ) as response:
        page.wait_for_function("() => window.log.seqs.length >= 20")
        proxy.cut()  # every connection drops, the EventSource's too
        page.wait_for_function("() => window.log.opens >= 2", timeout=10000)
        page.wait_for_function("() => window.log.ends === 1", timeout=20000)
        response.close()
    log = page.evaluate("window.log")
    assert log["seqs"] == list(range(1, len(log["seqs"]) + 1)), "no gap, no duplicate"
    assert log["text"] == "".join(tokens) == saved(client, thread_id)["content"]
