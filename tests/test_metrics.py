"""`GET /metrics` (chat/metrics.py): who may read it, and each series moving as what it counts
happens, on two daphne processes sharing PostgreSQL and Redis (each process its own series)."""

import asyncio
import json

import httpx
import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect as ws_connect

from chat import frames
from tests.servers import cookie_header, frames_until, login, shared_sites


def series(text: str) -> dict[tuple[str, tuple], float]:
    """Every sample of an exposition, by name and sorted labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


# --- who may read them ---------------------------------------------------------------------


@pytest.mark.django_db
def test_metrics_answer_a_direct_loopback_peer_or_the_token_only(settings):
    settings.METRICS_TOKEN = "s3cret"
    local = Client(REMOTE_ADDR="127.0.0.1")
    answer = local.get("/metrics")
    assert answer.status_code == 200 and b"chat_replies_in_flight" in answer.content
    assert Client(REMOTE_ADDR="::1").get("/metrics").status_code == 200
    # Through a proxy (forwarding headers), or from elsewhere: the token or nothing.
    assert local.get("/metrics", HTTP_X_FORWARDED_FOR="203.0.113.9").status_code == 403
    assert local.get("/metrics", HTTP_FORWARDED="for=203.0.113.9").status_code == 403
    far = Client(REMOTE_ADDR="203.0.113.9")
    assert far.get("/metrics").status_code == 403
    assert far.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    assert far.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret").status_code == 200
    settings.METRICS_TOKEN = ""
    assert far.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 403


# --- each series on two processes ----------------------------------------------------------


@pytest.fixture(scope="module")
def processes(stub_server, tmp_path_factory):
    with shared_sites(
        stub_server.url,
        tmp_path_factory.mktemp("var"),
        {"mia": "mia-pw"},
        REPLIES_PER_MINUTE="0",
        AGENT_MODELS="stub-model,second-model",
    ) as servers:
        yield servers


def scrape(server) -> dict:
    return series(httpx.get(f"{server.url}/metrics", timeout=10).text)


def value(scraped: dict, name: str, **labels: str) -> float:
    return scraped.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.asyncio
async def test_each_series_moves_with_what_it_counts_on_the_process_it_happens_on(processes, stub):
    stub.script("metered", tokens=["one", " two", " three"], usage={"prompt_tokens": 11})
    stub.script("broken", status=500)
    a, b = processes
    user = login(a.url, "mia", "mia-pw")
    thread = user.post("/api/threads/", json={"title": "metered"}).json()["id"]
    before_a, before_b = scrape(a), scrape(b)

    ws = await ws_connect(
        f"{a.ws_url}/ws/threads/{thread}/",
        origin=a.url,
        additional_headers={"Cookie": cookie_header(user)},
    )
    assert json.loads(await ws.recv())["type"] == "ready"
    await ws.send(json.dumps({"command": "start", "message": "metered"}))
    await frames_until(ws, frames.is_terminal)
    await ws.send(json.dumps({"command": "start", "message": "broken"}))
    await frames_until(ws, frames.is_terminal)
    await ws.send(json.dumps({"command": "start", "message": "x", "model": "no-such"}))
    await frames_until(ws, lambda f: f["type"] == "error" and "message_id" not in f)
    open_a = scrape(a)
    await ws.close()
    await asyncio.sleep(0.5)  # the reply settles its tokens just after its last frame
    after_a, after_b = scrape(a), scrape(b)

    def moved(name: str, **labels: str) -> float:
        return value(after_a, name, **labels) - value(before_a, name, **labels)

    assert moved("chat_replies_started_total", model="stub-model") == 2
    assert moved("chat_replies_finished_total", status="complete", model="stub-model") == 1
    assert moved("chat_replies_finished_total", status="error", model="stub-model") == 1
    assert moved("chat_provider_errors_total", model="stub-model", code="provider_error") == 1
    assert moved("chat_refusals_total", code="bad_request") == 1
    assert moved("chat_tokens_total", kind="output", model="stub-model") == 3
    assert moved("chat_tokens_total", kind="input", model="stub-model") == 11
    assert moved("chat_time_to_first_token_seconds_count", model="stub-model") == 1
    assert moved("chat_frames_total") >= 1 and moved("chat_frame_bytes_total") > 50
    assert value(after_a, "chat_replies_in_flight") == value(before_a, "chat_replies_in_flight")
    assert value(open_a, "chat_open_connections", transport="websocket") == 1 + value(
        before_a, "chat_open_connections", transport="websocket"
    )
    assert value(after_a, "chat_open_connections", transport="websocket") == value(
        before_a, "chat_open_connections", transport="websocket"
    )
    # Process B served nothing of it: its series are its own.
    assert value(after_b, "chat_replies_started_total", model="stub-model") == value(
        before_b, "chat_replies_started_total", model="stub-model"
    )

    # A reply in flight, and an event stream, on B.
    stub.script("slow metered", tokens=[" s"] * 60, delay_ms=30)
    async with httpx.AsyncClient(
        base_url=b.url, cookies=user.cookies, headers=user.headers, timeout=20
    ) as http:
        async with http.stream("GET", f"/api/threads/{thread}/events/") as events:
            lines = events.aiter_lines()
            while not (await anext(lines)).startswith("data:"):
                pass
            body = {"message": "slow metered", "thread_id": thread}
            async with http.stream("POST", "/api/stream/message", json=body) as answer:
                assert answer.status_code == 200
                async for line in answer.aiter_lines():
                    if '"token"' in line:
                        break
                during = scrape(b)
                assert value(during, "chat_replies_in_flight") == 1
                assert value(during, "chat_open_connections", transport="sse") == 2
    assert value(scrape(a), "chat_event_loop_lag_seconds") >= 0


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_replys_end_is_one_json_log_line_with_its_fields(stub, alice):
    """LOG_FORMAT=json's formatter (chat/logs.py) on the record a real reply's end writes."""
    import logging

    from chat.logs import JsonFormatter
    from tests.helpers import connect, frames_until_end, new_thread, receive, send, start_command

    stub.script("logged", tokens=["a", "b", "c"], usage={"prompt_tokens": 7})
    thread = await new_thread(alice, "logged")
    ws = await connect(thread.id, alice)
    await receive(ws)
    records: list[logging.LogRecord] = []
    keep = logging.Handler()
    keep.emit = records.append
    run_log = logging.getLogger("chat.engine.run")
    run_log.addHandler(keep)
    try:
        await send(ws, start_command("logged"))
        ended = (await frames_until_end(ws))[-1]
        await asyncio.sleep(0.2)
    finally:
        run_log.removeHandler(keep)
    await ws.disconnect()
    (record,) = [r for r in records if getattr(r, "fields", {}).get("event") == "reply_end"]
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert (entry["level"], entry["logger"]) == ("info", "chat.engine.run")
    assert entry["reply_id"] == ended["message_id"] and entry["thread_id"] == str(thread.id)
    assert (entry["model"], entry["status"], entry["output_tokens"]) == (
        "stub-model",
        "complete",
        3,
    )
    assert entry["input_tokens"] == 7 and entry["first_token_ms"] is not None
