"""Each user's daily budget of output tokens (DAILY_TOKEN_BUDGET; 0: none), of input tokens
(DAILY_INPUT_BUDGET), and the ledger of both kinds per model and day (ModelUsage).

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
from django.db import connection, transaction
from django.db.models import F
from django.db.models.functions import Greatest

from chat.models import ModelUsage, TokenUsage

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


class Spent(Exception):
    """A day's budget is spent: `budget` is which, "input" (DAILY_INPUT_BUDGET) or "output"
    (DAILY_TOKEN_BUDGET)."""

    def __init__(self, budget: str) -> None:
        super().__init__(budget)
        self.budget = budget


def unbudgeted(*, user_id: int, tokens: int) -> Hold | None:
    """With neither daily budget set, what `reply_hold` would return, with no database: a Hold
    of `tokens` that counts nothing. None when a budget is set (`reply_hold` reads its row)."""
    if settings.DAILY_INPUT_BUDGET > 0 or settings.DAILY_TOKEN_BUDGET > 0:
        return None
    return Hold(user_id, today(), tokens, counted=False)


def reply_hold(*, user_id: int, tokens: int) -> Hold:
    """A reply's admission to the day's budgets, in one call (one trip to the database
    thread): `input_allowed`, then `reserve`. Raises `Spent` naming the first budget spent."""
    if not input_allowed(user_id=user_id):
        raise Spent("input")
    hold = reserve(user_id=user_id, tokens=tokens)
    if hold is None:
        raise Spent("output")
    return hold


@dataclass(frozen=True)
class Outcome:
    """What a reply's end adds to its model's day besides tokens: whether it failed, and its
    time to first token (None: none came)."""

    failed: bool = False
    first_token_ms: int | None = None


def settle(
    hold: Hold,
    *,
    spent: int,
    model: str = "",
    input_tokens: int = 0,
    reply: bool = True,
    outcome: Outcome | None = None,
) -> None:
    """Give the hold back and count what was `spent` instead, on the hold's day; with `model`,
    count the tokens of both kinds, input too, for that model (ModelUsage) and the user's
    day's input (DAILY_INPUT_BUDGET), and one more reply unless it is not one (a title)."""
    spent, input_tokens = max(spent, 0), max(input_tokens, 0)
    if hold.counted:  # first: the hold is free for the next start as soon as may be
        TokenUsage.objects.filter(user_id=hold.user_id, day=hold.day).update(
            reserved=Greatest(F("reserved") - hold.tokens, 0),
            used=F("used") + spent,
            input_used=F("input_used") + input_tokens,
        )
    elif input_tokens and settings.DAILY_INPUT_BUDGET > 0:
        TokenUsage.objects.bulk_create(
            [TokenUsage(user_id=hold.user_id, day=hold.day)], ignore_conflicts=True
        )
        TokenUsage.objects.filter(user_id=hold.user_id, day=hold.day).update(
            input_used=F("input_used") + input_tokens
        )
    if model:
        _count_model(
            hold.user_id, hold.day, model, input_tokens, spent, int(reply), outcome or Outcome()
        )


def _count_model(
    user_id: int,
    day: datetime.date,
    model: str,
    input_tokens: int,
    output: int,
    replies: int,
    outcome: Outcome,
) -> None:
    """Add one reply's (or title's) tokens, failure and time to first token to the user's day
    with `model`: one upsert (SQLite and PostgreSQL both take `ON CONFLICT ... DO UPDATE`)."""
    table = connection.ops.quote_name(ModelUsage._meta.db_table)
    bucket = _ttft_bucket(outcome.first_token_ms) if replies else None
    counted = {
        "input_tokens": input_tokens,
        "output_tokens": output,
        "replies": replies,
        "errors": int(outcome.failed),
        **{f"ttft_{n}": int(n == bucket) for n in range(1, len(ModelUsage.TTFT_BUCKETS_MS) + 1)},
    }
    columns = ", ".join(counted)
    updates = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in counted)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (user_id, day, model, {columns}) "
            f"VALUES (%s, %s, %s, {', '.join(['%s'] * len(counted))}) "
            f"ON CONFLICT (user_id, day, model) DO UPDATE SET {updates}",
            [user_id, day, model, *counted.values()],
        )


def _ttft_bucket(first_token_ms: int | None) -> int:
    """The TTFT column (1-based) a reply falls in; no first token: the last."""
    bounds = ModelUsage.TTFT_BUCKETS_MS
    if first_token_ms is not None:
        for number, bound in enumerate(bounds, 1):
            if bound is not None and first_token_ms <= bound:
                return number
    return len(bounds)


def input_allowed(*, user_id: int) -> bool:
    """Whether the user may still send input today (DAILY_INPUT_BUDGET; 0: no budget). The
    reply that crosses the budget finishes; the next is refused."""
    budget = settings.DAILY_INPUT_BUDGET
    if budget <= 0:
        return True
    row = TokenUsage.objects.filter(user_id=user_id, day=today()).values_list("input_used")
    return (row.first() or (0,))[0] < budget


def reply_hold_lost(
    *,
    user_id: int,
    day: datetime.date,
    held: int,
    content: str,
    frames_shown: int = 0,
    model: str = "",
) -> int:
    """Settle the hold of a reply whose process died holding it: exactly the `held` tokens
    its row recorded are given back (never another reply's), and what it showed is counted
    as spent: a token per frame shown, or one per four characters if that is more. Returns
    the tokens counted."""
    spent = max(frames_shown, -(-len(content) // 4))
    held_hold = Hold(user_id, day, held, counted=settings.DAILY_TOKEN_BUDGET > 0)
    settle(held_hold, spent=spent, model=model, outcome=Outcome(failed=True))
    return spent


def standing(*, user_id: int) -> dict[str, Any]:
    """The user's budget today: `GET /api/usage/` and the page's "left today"."""
    day = today()
    budget = settings.DAILY_TOKEN_BUDGET
    row = TokenUsage.objects.filter(user_id=user_id, day=day).first()
    used, reserved, input_used = (row.used, row.reserved, row.input_used) if row else (0, 0, 0)
    tomorrow = day + datetime.timedelta(days=1)
    midnight = datetime.datetime.combine(tomorrow, datetime.time(), datetime.UTC)
    input_budget = settings.DAILY_INPUT_BUDGET
    since = day - datetime.timedelta(days=USAGE_DAYS - 1)
    by_model = ModelUsage.objects.filter(user_id=user_id, day__gte=since).order_by("-day", "model")
    return {
        "day": day.isoformat(),
        "budget": budget,
        "used": used,
        "reserved": reserved,
        "remaining": max(budget - used - reserved, 0) if budget > 0 else None,
        "resets_at": midnight.isoformat().replace("+00:00", "Z"),
        "input_budget": input_budget,
        "input_used": input_used,
        "input_remaining": max(input_budget - input_used, 0) if input_budget > 0 else None,
        "models": [
            {
                "day": usage.day.isoformat(),
                "model": usage.model,
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
                "replies": usage.replies,
            }
            for usage in by_model
        ],
    }


# Days of per-model usage GET /api/usage/ lists, today included.
USAGE_DAYS = 30
