"""What an operator watches: Prometheus series of this process (`GET /metrics`).

Each series is counted where the thing happens, once (not per subscriber): a reply's start and
end and its tokens in the engine, refusals where a start, an upload or a socket is refused,
connections where a socket or stream is counted among its user's (standing.py), tool calls as
their step ends, slow readers as they are dropped, outage retries as they are retried, and the
event loop's lag by a watcher task. docs/metrics.md lists them with example PromQL; the
Grafana dashboard is docs/grafana-dashboard.json.

Per process, as Prometheus expects: scrape every process (or sum in PromQL).
"""

import asyncio
import hmac
import ipaddress
import logging
import time

from django.conf import settings
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

from chat import runtime, tasks

logger = logging.getLogger(__name__)

REPLIES_STARTED = Counter("chat_replies_started_total", "Replies begun.", ["model"])
REPLIES_FINISHED = Counter(
    "chat_replies_finished_total", "Replies ended, by their saved status.", ["status", "model"]
)
REPLIES_IN_FLIGHT = Gauge("chat_replies_in_flight", "Replies running on this process.")
TIME_TO_FIRST_TOKEN = Histogram(
    "chat_time_to_first_token_seconds",
    "From a reply's start to its first token from the provider.",
    ["model"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32),
)
REPLY_SECONDS = Histogram(
    "chat_reply_seconds",
    "A reply's whole time, start to end.",
    ["model", "status"],
    buckets=(0.5, 1, 2, 5, 10, 20, 40, 80, 160),
)
TOKENS = Counter(
    "chat_tokens_total", "Tokens, by kind (input, output) and model.", ["kind", "model"]
)
OPEN_CONNECTIONS = Gauge(
    "chat_open_connections", "Sockets and streams open on this process.", ["transport"]
)
REFUSALS = Counter("chat_refusals_total", "Starts, uploads and sockets refused, by code.", ["code"])
PROVIDER_ERRORS = Counter(
    "chat_provider_errors_total",
    "Replies the provider failed, by model and code.",
    ["model", "code"],
)
TOOL_CALLS = Counter(
    "chat_tool_calls_total", "Tool calls, by tool and outcome.", ["tool", "outcome"]
)
FRAMES = Counter("chat_frames_total", "Reply frames published (once each, however many read them).")
FRAME_BYTES = Counter("chat_frame_bytes_total", "Bytes of the reply frames published.")
SLOW_READERS = Counter(
    "chat_slow_reader_drops_total", "Clients dropped for not reading.", ["transport"]
)
OUTAGE_RETRIES = Counter(
    "chat_outage_retries_total", "Database or Redis calls retried through an outage."
)
LOOP_LAG = Gauge("chat_event_loop_lag_seconds", "How late the event loop ran a timer, lately.")

for transport in ("websocket", "sse", "chatkit"):  # every series shows from the start
    OPEN_CONNECTIONS.labels(transport)


def reply_started(model: str) -> None:
    REPLIES_STARTED.labels(model).inc()
    REPLIES_IN_FLIGHT.inc()


def reply_finished(
    *,
    model: str,
    status: str,
    code: str,
    first_token_ms: int | None,
    elapsed_ms: int,
) -> None:
    REPLIES_FINISHED.labels(status, model).inc()
    REPLY_SECONDS.labels(model, status).observe(elapsed_ms / 1000)
    if first_token_ms is not None:
        TIME_TO_FIRST_TOKEN.labels(model).observe(first_token_ms / 1000)
    if code in ("provider_error", "timeout"):
        PROVIDER_ERRORS.labels(model, code).inc()


def reply_gone() -> None:
    """The reply's task ended (its tokens settled): no longer in flight here."""
    REPLIES_IN_FLIGHT.dec()


def tokens(*, model: str, input_tokens: int, output_tokens: int) -> None:
    if input_tokens:
        TOKENS.labels("input", model).inc(input_tokens)
    if output_tokens:
        TOKENS.labels("output", model).inc(output_tokens)


def refused(code: str) -> None:
    REFUSALS.labels(code).inc()


def frame_published(size: int) -> None:
    FRAMES.inc()
    FRAME_BYTES.inc(size)


# --- the event loop's lag ---------------------------------------------------------------------

LAG_PERIOD = 1.0


def watch_loop() -> None:
    """Start this loop's lag watcher, once (runtime's slot): how late a 1 s timer fires."""
    runtime.slot("loop-lag", lambda: tasks.background(_watch_lag(), name="chat-loop-lag"))


async def _watch_lag() -> None:
    while True:
        asked = time.monotonic()
        await asyncio.sleep(LAG_PERIOD)
        LOOP_LAG.set(max(time.monotonic() - asked - LAG_PERIOD, 0.0))


# --- who may read them ------------------------------------------------------------------------

FORWARDING_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP")


def may_read(meta: dict, peer: str) -> bool:
    """A direct loopback peer (a request that came through a proxy, with forwarding headers,
    is not one), or anyone with `Authorization: Bearer <METRICS_TOKEN>`."""
    token = settings.METRICS_TOKEN
    given = meta.get("HTTP_AUTHORIZATION", "")
    if token and hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        return True
    if any(header in meta for header in FORWARDING_HEADERS):
        return False
    try:
        return ipaddress.ip_address(peer).is_loopback
    except ValueError:
        return False


def exposition() -> tuple[bytes, str]:
    """This process's series, as Prometheus reads them."""
    return generate_latest(), CONTENT_TYPE_LATEST
