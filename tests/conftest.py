"""Shared fixtures: the stub provider, users with sessions, channel layers, real services.

Tests that need Redis, PostgreSQL or Chromium skip when it is missing on a laptop; with
CHAT_REQUIRE_SERVICES=1 (set by .ci/run) a missing service fails the test instead.
"""

import contextlib
import os
import shutil
import socket
from urllib.parse import urlparse

import pytest
import pytest_asyncio
from channels.layers import channel_layers
from django.conf import settings as django_settings

from chat import runtime
from chatproject.settings import redis_channel_layer
from scripts.stub_provider import StubServer
from tests.servers import stub_site

# No trace of a test goes to OpenAI, even on the `openai` provider's path.
os.environ["OPENAI_AGENTS_DISABLE_TRACING"] = "1"
# Settings were read before this file (pytest-django): this process needs telling too.
django_settings.OPENAI_AGENTS_DISABLE_TRACING = True
# Users made in this process (about 300 a run) hash their passwords with MD5, not PBKDF2's
# million rounds (0.25 s of CPU each, over a minute a run): Django's own advice for tests,
# which check who may do what, not the hash. Servers keep PBKDF2 (tests/servers.py).
django_settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

REDIS_TEST_URL = os.environ.get("REDIS_TEST_URL", "redis://127.0.0.1:6379/15")
POSTGRES_TEST_URL = os.environ.get(
    "POSTGRES_TEST_URL", "postgres://postgres@127.0.0.1:5432/postgres"
)


def require(service: str, reachable: bool) -> None:
    """Skip (laptop) or fail (CI) a test whose service is not there."""
    if reachable:
        return
    message = f"{service} is not reachable"
    if os.environ.get("CHAT_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{message}, and CI requires it")
    pytest.skip(message)


def tcp_open(url: str, default_port: int) -> bool:
    """Whether something listens at the URL's host and port."""
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname, parsed.port or default_port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def stub_server():
    """One scripted OpenAI-compatible server for the whole run."""
    with StubServer(api_key="test-key") as server:
        yield server


@pytest.fixture
def stub(stub_server, settings):
    """The stub as this test's provider, with no scripts left from other tests."""
    stub_server.reset()
    settings.AGENT_PROVIDER = "compatible"
    settings.AGENT_MODEL = "stub-model"
    settings.OPENAI_BASE_URL = stub_server.url
    settings.OPENAI_API_KEY = "test-key"
    return stub_server


@pytest.fixture(autouse=True)
def _never_the_internet(settings):
    """No test reaches a real provider: without the `stub` fixture, the provider is unusable."""
    settings.AGENT_PROVIDER = "compatible"
    settings.OPENAI_BASE_URL = "http://127.0.0.1:9/v1"
    settings.OPENAI_API_KEY = "none"


@pytest.fixture(autouse=True)
def _model_access_read_afresh():
    """Each test reads the operator's ModelAccess table anew (a process caches it briefly)."""
    from chat import model_choice

    model_choice.forget_access()
    yield
    model_choice.forget_access()


@pytest.fixture
def redis_url():
    """The test Redis database, flushed before and after."""
    require("Redis", tcp_open(REDIS_TEST_URL, 6379))
    import redis

    client = redis.Redis.from_url(REDIS_TEST_URL)
    client.flushdb()
    yield REDIS_TEST_URL
    client.flushdb()
    client.close()


@pytest.fixture
def postgres_url():
    """The PostgreSQL server's maintenance database URL."""
    require("PostgreSQL", tcp_open(POSTGRES_TEST_URL, 5432))
    return POSTGRES_TEST_URL


def _use_layer(settings, redis: str | None, kind: str | None = None) -> None:
    settings.REDIS_URL = redis or ""
    if redis:
        settings.CHANNEL_LAYERS = {"default": redis_channel_layer(redis, kind)}
    else:
        settings.CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "channels.layers.InMemoryChannelLayer",
                "CONFIG": {"capacity": 1000},
            }
        }
    channel_layers.backends.clear()


async def _close_layer() -> None:
    """End this test's replies and listeners while its event loop still runs, then the layer:
    a task cancelled only when the loop closes can hang the teardown."""
    await runtime.close()
    for layer in channel_layers.backends.values():
        with contextlib.suppress(Exception):
            if hasattr(layer, "close_pools"):
                await layer.close_pools()
            elif hasattr(layer, "flush"):
                await layer.flush()
    channel_layers.backends.clear()


@pytest_asyncio.fixture(
    params=[
        "memory",
        pytest.param("pubsub", marks=pytest.mark.redis),
        pytest.param("core", marks=pytest.mark.redis),
    ]
)
async def layer(request, settings):
    """Each channel layer (and its live-state store): in-process, then both Redis layers."""
    redis = request.getfixturevalue("redis_url") if request.param != "memory" else None
    _use_layer(settings, redis, request.param)
    yield request.param
    await _close_layer()


@pytest_asyncio.fixture
async def memory_layer(settings):
    """The laptop default: in-process layer and store."""
    _use_layer(settings, None)
    yield "memory"
    await _close_layer()


@pytest.fixture
def make_user(django_user_model):
    """A user factory."""

    def make(username: str):
        return django_user_model.objects.create_user(username=username, password="pw-" + username)

    return make


@pytest.fixture
def alice(make_user):
    return make_user("alice")


@pytest.fixture
def bob(make_user):
    return make_user("bob")


CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium under Playwright, one per test module: Playwright's sync API runs an
    event loop in this thread, so it must be gone before the next module's asyncio tests."""
    chromium = shutil.which("chromium")
    require("Chromium", chromium is not None)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    """A fresh browser context's one tab (a module may define its own)."""
    context = browser.new_context()
    tab = context.new_page()
    yield tab
    context.close()


@pytest.fixture(scope="module")
def site(request, stub_server, tmp_path_factory):
    """One daphne process for the test module, on a laptop's defaults (SQLite, in-process
    layer) with the stub as its model: `pytest.mark.site(users, **settings)` on the module
    gives its users (name -> password) and settings. Stopped after the module's last test."""
    marker = request.node.get_closest_marker("site")
    users, overrides = (marker.args[0], marker.kwargs) if marker else ({}, {})
    with stub_site(stub_server.url, tmp_path_factory.mktemp("var"), users, **overrides) as server:
        yield server


def pytest_configure(config):
    # The test database settings come from chatproject.settings; keep the file under var/.
    django_settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
