"""Create a demo user on an empty database and print its credentials."""

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

USERNAME = "demo"
# A server bound to every address is reached, from this machine, at loopback.
ANY_ADDRESS = {"0.0.0.0": "127.0.0.1", "::": "[::1]", "": "127.0.0.1"}


def site_url(host: str, port: str | int) -> str:
    """The address a browser on this machine opens for daphne bound to `host`:`port`."""
    host = ANY_ADDRESS.get(host, host)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}/"


class Command(BaseCommand):
    """`make run` calls this: a newcomer can log in straight away."""

    help = "Create the demo user when no user exists, and print how to log in."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="the address daphne binds")
        parser.add_argument("--port", default="8000", help="the port daphne listens on")

    def handle(self, *args: object, **options: str) -> None:
        User = get_user_model()
        saved = settings.VAR_DIR / "demo-credentials.txt"
        if not User.objects.exists():
            # Reuse a saved password, so every database made on this machine has the same one.
            password = saved.read_text().split()[1] if saved.exists() else secrets.token_urlsafe(9)
            User.objects.create_user(
                username=USERNAME, password=password, is_staff=True, is_superuser=True
            )
            settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
            saved.write_text(f"{USERNAME} {password}\n")
            saved.chmod(0o600)
        url = site_url(options["host"], options["port"])
        if saved.exists():
            username, password = saved.read_text().split()
            if User.objects.filter(username=username).exists():
                self.stdout.write(
                    f"Log in at {url} as  user: {username}  password: {password}"
                    f"  (also admin at /admin/; kept in {saved})"
                )
                return
        self.stdout.write(f"The chat will be at {url}")
