"""Make an invite link: one person may make an account with it, even while sign-up is closed."""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse

from chat import services
from chat.errors import ChatError


class Command(BaseCommand):
    """`python manage.py invite --note "for Ana"`: prints the link (shown this once)."""

    help = "Make a single-use invite link that expires, and print it."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--note", default="", help="who it is for (operators see it)")
        parser.add_argument(
            "--days", type=int, default=None, help="how many days it works (INVITE_DAYS)"
        )
        parser.add_argument(
            "--site",
            default="http://127.0.0.1:8000",
            help="the site's address as users reach it, e.g. https://chat.example.com",
        )
        parser.add_argument("--by", default=None, help="the username of the operator inviting")

    def handle(self, *args: object, **options) -> None:
        by = None
        if options["by"]:
            by = get_user_model().objects.filter(username=options["by"]).first()
            if by is None:
                raise CommandError(f"No user {options['by']!r}.")
        try:
            invite, token = services.invite_create(
                created_by=by, note=options["note"], days=options["days"]
            )
        except ChatError as refused:
            raise CommandError(refused.message) from None
        link = options["site"].rstrip("/") + reverse("invite", args=[token])
        self.stdout.write(link)
        self.stderr.write(
            f"Works once, until {invite.expires_at:%Y-%m-%d %H:%M} UTC "
            f"(INVITE_DAYS={settings.INVITE_DAYS}); the admin's Invites list can expire it."
        )
