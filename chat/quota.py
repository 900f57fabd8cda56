"""Each user's daily budget of output tokens (DAILY_TOKEN_BUDGET; 0: none).

A reply holds its most (REPLY_MAX_TOKENS, or what is left of the day's budget if that is
less, and then that is its `max_tokens`) before it starts, and settles to what the provider
reported when it ends; a model-made title does the same with TITLE_MAX_TOKENS. So replies
started at once, on any process, can never spend more than the budget: each hold locks the
user's row for the day (SQLite: the database), which serializes them. Days are UTC. The rows
are the database's, so a restart forgets nothing; a reply whose process died gives its hold
back when it is marked interrupted (services.py): exactly what it held, which its row keeps.

Synchronous ORM functions: run them off the event loop.
"""

import datetime
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.db.models.functions import Greatest

from chat.models import TokenUsage

TITLE_MAX_TOKENS = 32


@dataclass(frozen=True)
class Hold:
    """Tokens held from one day's budget for something still running."""

    user_id: int
    day: datetime.date
    tokens: int  # the most it may spend
    counted: bool = True  # False with no budget: nothing to settle


def today() -> datetime.date:
    return datetime.datetime.now(datetime.UTC).date()


def reserve(*, user_id: int, tokens: int) -> Hold | None:
    """Hold up to `tokens` of the user's budget for today (fewer if fewer are left); None when
    none are left.

    With no budget nothing is held or counted: a Hold of `tokens`, never settled.
    """
    day = today()
    budget = settings.DAILY_TOKEN_BUDGET
    if budget <= 0:
        return Hold(user_id, day, tokens, counted=False)
    # Most starts find the whole hold free: one UPDATE, which the database runs atomically.
    if TokenUsage.objects.filter(
        user_id=user_id, day=day, used__lte=budget - tokens - F("reserved")
    ).update(reserved=F("reserved") + tokens):
        return Hold(user_id, day, tokens)
    # The day's first hold, or the budget's last tokens: the row locked, what is left held.
    TokenUsage.objects.bulk_create([TokenUsage(user_id=user_id, day=day)], ignore_conflicts=True)
    with transaction.atomic():
        row = TokenUsage.objects.select_for_update().get(user_id=user_id, day=day)
        left = budget - row.used - row.reserved
        if left <= 0:
            return None
        tokens = min(tokens, left)
        TokenUsage.objects.filter(pk=row.pk).update(reserved=F("reserved") + tokens)
    return Hold(user_id, day, tokens)


def settle(hold: Hold, *, spent: int) -> None:
    """Give the hold back and count what was `spent` instead, on the hold's day."""
    if not hold.counted:
        return
    TokenUsage.objects.filter(user_id=hold.user_id, day=hold.day).update(
        reserved=Greatest(F("reserved") - hold.tokens, 0), used=F("used") + max(spent, 0)
    )


def reply_hold_lost(
    *, user_id: int, day: datetime.date, held: int, content: str, frames_shown: int = 0
) -> int:
    """Settle the hold of a reply whose process died holding it: exactly the `held` tokens
    its row recorded are given back (never another reply's), and what it showed is counted
    as spent: a token per frame shown, or one per four characters if that is more. Returns
    the tokens counted."""
    spent = max(frames_shown, -(-len(content) // 4))
    if settings.DAILY_TOKEN_BUDGET > 0:
        settle(Hold(user_id, day, held), spent=spent)
    return spent


def standing(*, user_id: int) -> dict[str, Any]:
    """The user's budget today: `GET /api/usage/` and the page's "left today"."""
    day = today()
    budget = settings.DAILY_TOKEN_BUDGET
    row = TokenUsage.objects.filter(user_id=user_id, day=day).first()
    used, reserved = (row.used, row.reserved) if row else (0, 0)
    tomorrow = day + datetime.timedelta(days=1)
    midnight = datetime.datetime.combine(tomorrow, datetime.time(), datetime.UTC)
    return {
        "day": day.isoformat(),
        "budget": budget,
        "used": used,
        "reserved": reserved,
        "remaining": max(budget - used - reserved, 0) if budget > 0 else None,
        "resets_at": midnight.isoformat().replace("+00:00", "Z"),
    }
