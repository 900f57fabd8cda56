"""The client's real address behind a reverse proxy (TRUSTED_PROXIES, chat/proxy.py): taken from
X-Forwarded-For only when the peer is a trusted proxy, and what the login throttle keys on."""

import asyncio
import re

import httpx
import pytest

LIMIT = 3
pytestmark = [
    # The end-to-end tests' daphne: the test client (127.0.0.1) is the proxy; a connection
    # from 127.0.0.2 is a stranger reaching daphne directly.
    pytest.mark.site(
        {"ursula": "ursula-pw", "victor": "victor-pw"},
        TRUSTED_PROXIES="127.0.0.1",
        LOGIN_FAILURE_LIMIT=str(LIMIT),
    ),
]


def client_seen(trusted, peer, *forwarded, kind="http"):
    """scope["client"] as the wrapped application sees it, for a connection from `peer` with
    these X-Forwarded-For header values."""
    from chat.proxy import TrustedProxies

    seen = {}

    async def app(scope, receive, send):
        seen.update(scope)

    scope = {
        "type": kind,
        "client": [peer, 50123] if peer else None,
        "headers": [(b"host", b"chat.example.com")]
        + [(b"x-forwarded-for", value.encode()) for value in forwarded],
    }
    asyncio.run(TrustedProxies(app, trusted=trusted)(scope, None, None))
    assert scope["client"] == ([peer, 50123] if peer else None), "the caller's scope is kept"
    return seen["client"]


# --- The middleware ---------------------------------------------------------------------------


def test_a_trusted_proxy_gives_the_address_it_forwarded_for():
    assert client_seen(["127.0.0.1"], "127.0.0.1", "203.0.113.9") == ["203.0.113.9", 0]
    assert client_seen(["127.0.0.1"], "127.0.0.1", "203.0.113.9", kind="websocket") == [
        "203.0.113.9",
        0,
    ]


def test_an_untrusted_peer_keeps_its_own_address_whatever_it_forwards():
    assert client_seen(["127.0.0.1"], "198.51.100.1", "10.0.0.1") == ["198.51.100.1", 50123]
    assert client_seen([], "127.0.0.1", "203.0.113.9") == ["127.0.0.1", 50123], "default: none"
    assert client_seen(["10.0.0.0/8"], "11.0.0.1", "203.0.113.9") == ["11.0.0.1", 50123]


def test_the_right_most_address_no_trusted_proxy_wrote_is_the_client():
    trusted = ["127.0.0.1", "10.0.0.0/8"]
    # A CDN (10.1.2.3) in front of nginx: nginx appended the CDN, the CDN appended the client.
    assert client_seen(trusted, "127.0.0.1", "203.0.113.9, 10.1.2.3") == ["203.0.113.9", 0]
    # Whatever the client sent itself stands left of it and is not believed, a forged trusted
    # address included.
    assert client_seen(trusted, "127.0.0.1", "1.2.3.4, 203.0.113.9") == ["203.0.113.9", 0]
    assert client_seen(trusted, "127.0.0.1", "10.0.0.5, 203.0.113.9") == ["203.0.113.9", 0]
    # Several headers are one list, in order.
    assert client_seen(trusted, "127.0.0.1", "1.2.3.4", "203.0.113.9") == ["203.0.113.9", 0]
    # Only trusted proxies all the way (a health check from the proxy's own host).
    assert client_seen(trusted, "127.0.0.1", "10.0.0.2") == ["10.0.0.2", 0]


def test_addresses_in_the_forms_proxies_write_them():
    trusted = ["127.0.0.1", "::1"]
    assert client_seen(trusted, "127.0.0.1", "2001:db8::1") == ["2001:db8::1", 0]
    assert client_seen(trusted, "127.0.0.1", "[2001:db8::1]:4711") == ["2001:db8::1", 0]
    assert client_seen(trusted, "127.0.0.1", "203.0.113.9:4711") == ["203.0.113.9", 0]
    assert client_seen(trusted, "::1", " 203.0.113.9 ") == ["203.0.113.9", 0]
    # daphne on a dual-stack socket sees an IPv4 proxy as ::ffff:127.0.0.1.
    assert client_seen(trusted, "::ffff:127.0.0.1", "203.0.113.9") == ["203.0.113.9", 0]


def test_garbage_where_the_client_should_be_leaves_the_peer():
    trusted = ["127.0.0.1"]
    for header in ("not-an-address", "unknown", "", " , ", "203.0.113.9, garbage", "1.2.3.400"):
        assert client_seen(trusted, "127.0.0.1", header) == ["127.0.0.1", 50123], header
    assert client_seen(trusted, "127.0.0.1") == ["127.0.0.1", 50123], "no header"
    # Garbage the client sent, left of what the proxy wrote, does not matter.
    assert client_seen(trusted, "127.0.0.1", "<script>, 203.0.113.9") == ["203.0.113.9", 0]


def test_scopes_without_a_client_and_lifespan_pass_through():
    assert client_seen(["127.0.0.1"], None, "203.0.113.9") is None
    assert client_seen(["127.0.0.1"], "127.0.0.1", "203.0.113.9", kind="lifespan") == [
        "127.0.0.1",
        50123,
    ]


def test_send_and_receive_reach_the_application_untouched():
    """DropSlowReaders finds daphne's transport through its `send`."""
    from chat.proxy import TrustedProxies

    got = {}

    async def app(scope, receive, send):
        got.update(receive=receive, send=send)

    receive, send = object(), object()
    scope = {"type": "http", "client": ["127.0.0.1", 1], "headers": []}
    asyncio.run(TrustedProxies(app, trusted=["127.0.0.1"])(scope, receive, send))
    assert got == {"receive": receive, "send": send}


def test_a_wrong_trusted_proxies_entry_stops_the_start():
    from django.core.exceptions import ImproperlyConfigured

    from chat.proxy import TrustedProxies

    with pytest.raises(ImproperlyConfigured, match="TRUSTED_PROXIES"):
        TrustedProxies(None, trusted=["127.0.0.1", "nginx.internal"])


def test_the_login_throttle_keys_on_remote_addr_never_on_a_header(rf):
    """What axes takes for the address: REMOTE_ADDR (set from the middleware's scope), even
    if django-ipware (which reads X-Forwarded-For when configured to) gets installed."""
    from axes.helpers import get_client_ip_address

    request = rf.post("/accounts/login/", REMOTE_ADDR="198.51.100.7")
    request.META["HTTP_X_FORWARDED_FOR"] = "203.0.113.9"
    assert get_client_ip_address(request) == "198.51.100.7"
    assert get_client_ip_address(request, use_ipware=True) == "198.51.100.7"


# --- Over a real daphne -----------------------------------------------------------------------


def log_in(site, username, password, forwarded_for=None, local_address="127.0.0.1") -> int:
    """The status of a login through the real form, from `local_address`, with this
    X-Forwarded-For (as nginx on that address would send it); 302 is a success."""
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    transport = httpx.HTTPTransport(local_address=local_address)
    with httpx.Client(base_url=site.url, headers=headers, transport=transport, timeout=10) as c:
        page = c.get("/accounts/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        answer = c.post(
            "/accounts/login/",
            data={"username": username, "password": password, "csrfmiddlewaretoken": token},
        )
    return answer.status_code


@pytest.mark.slow
def test_a_strangers_guesses_through_the_proxy_do_not_lock_the_user_out_elsewhere(site):
    for _ in range(LIMIT):
        assert log_in(site, "ursula", "wrong", forwarded_for="203.0.113.9") in (200, 429)
    # The stranger's address is refused, the right password included ...
    assert log_in(site, "ursula", "ursula-pw", forwarded_for="203.0.113.9") == 429
    # ... and Ursula, at her own address behind the same proxy, gets in.
    assert log_in(site, "ursula", "ursula-pw", forwarded_for="198.51.100.7") == 302
    # Her success does not lift the stranger's lock.
    assert log_in(site, "ursula", "ursula-pw", forwarded_for="203.0.113.9") == 429


@pytest.mark.slow
def test_a_peer_that_is_not_the_proxy_cannot_choose_its_address(site):
    """A stranger reaching daphne directly (127.0.0.2) forges X-Forwarded-For: its guesses count
    against its own address, which it cannot leave by forging another."""
    for n in range(LIMIT):
        forged = f"198.51.100.{n + 20}"
        status = log_in(site, "victor", "wrong", forwarded_for=forged, local_address="127.0.0.2")
        assert status in (200, 429)
    assert (
        log_in(
            site, "victor", "victor-pw", forwarded_for="198.51.100.99", local_address="127.0.0.2"
        )
        == 429
    ), "locked at 127.0.0.2, whatever it claims"
    # The addresses it claimed were never charged: Victor logs in from one of them.
    assert log_in(site, "victor", "victor-pw", forwarded_for="198.51.100.20") == 302
