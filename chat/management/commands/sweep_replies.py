"""Mark replies left `streaming` by a dead process as `interrupted`."""

from asgiref.sync import async_to_sync
from django.core.management.base import BaseCommand

from chat.engine import generation


class Command(BaseCommand):
    """Run at start-up, before the server takes requests."""

    help = "Mark replies whose process died as interrupted, keeping their last checkpoint."

    def handle(self, *args, **options) -> None:
        count = async_to_sync(generation.reap_all)()
        self.stdout.write(f"{count} interrupted repl{'y' if count == 1 else 'ies'} marked")
