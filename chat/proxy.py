"""The client's real address behind a reverse proxy (TRUSTED_PROXIES).

Behind nginx every connection comes from the proxy, so without this every client would have
the proxy's address, and whatever keys on it (the login throttle, django-axes) would lump
them all together. A proxy says whom it forwards for in X-Forwarded-For, but anyone can send
that header: it is believed only from a peer listed in TRUSTED_PROXIES (default: none).

nginx's `$proxy_add_x_forwarded_for` appends the address it sees to whatever the client sent,
so only the right end of the list is known to be true. Walking from the right, every entry a
trusted proxy wrote is passed over; the first address that is not a trusted proxy is the
client. Anything left of it came from the client and is ignored. If that entry is not an
address at all, the peer's address stays.

daphne's own `--proxy-headers` is not used: it believes the header from any peer, and takes
its left-most entry, which the client writes.
"""

import ipaddress
from collections.abc import Awaitable, Iterable
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_address(text: str) -> Address | None:
    """An address as proxies write it (`203.0.113.9`, `2001:db8::1`, `203.0.113.9:4711`,
    `[2001:db8::1]:4711`), IPv4-mapped IPv6 as IPv4; None if it is not one."""
    text = text.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def parse_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """TRUSTED_PROXIES: addresses or CIDR networks."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ImproperlyConfigured(
                f"TRUSTED_PROXIES: {entry!r} is not an address or a network"
            ) from None
    return tuple(networks)


class TrustedProxies:
    """ASGI middleware: for an HTTP or WebSocket connection from a trusted proxy,
    scope["client"] becomes the address the proxy forwarded for (module doc), so Django's
    REMOTE_ADDR is the real client's. Other connections, and other scopes, pass untouched."""

    def __init__(self, app: Any, trusted: Iterable[str] | None = None) -> None:
        self.app = app
        self.trusted = parse_networks(settings.TRUSTED_PROXIES if trusted is None else trusted)

    def is_trusted(self, address: Address | None) -> bool:
        return address is not None and any(address in network for network in self.trusted)

    def client_of(self, scope: dict) -> Address | None:
        """The address a trusted peer forwarded for, or None to keep the peer's."""
        peer = scope.get("client")
        if not self.trusted or not peer or not self.is_trusted(parse_address(str(peer[0]))):
            return None
        forwarded = b",".join(
            value for name, value in scope.get("headers", ()) if name.lower() == b"x-forwarded-for"
        )
        entries = [entry for entry in forwarded.decode("latin-1").split(",") if entry.strip()]
        client = None
        for entry in reversed(entries):
            client = parse_address(entry)
            if not self.is_trusted(client):
                break  # the client, or garbage (None) where the client should be
        return client

    # Not a coroutine of its own: it returns the application's, so a connection that stays
    # open (an idle WebSocket) keeps no frame of this layer. The hint tells servers it is an
    # ASGI 3 application all the same (asgiref's `guarantee_single_callable`).
    _asgi_single_callable = True

    def __call__(self, scope: dict, receive: Any, send: Any) -> Awaitable[Any]:
        if scope["type"] in ("http", "websocket") and (client := self.client_of(scope)):
            scope = {**scope, "client": [str(client), 0]}
        return self.app(scope, receive, send)


def client_address(request: Any) -> str | None:
    """The address the login throttle keys on (AXES_CLIENT_IP_CALLABLE): REMOTE_ADDR, which
    TrustedProxies has set; never a header the client can write."""
    return request.META.get("REMOTE_ADDR")
