"""Which models a user may use, and which one a reply uses: the catalog (catalog.py) seen
through the operator's `ModelAccess` (admin) and the user's and thread's choices. Every
transport reaches a model through here (`reply_choice`, on the one begin path). Synchronous ORM
code: async code calls it off the event loop.
"""

import math
import time

from django.contrib.auth import get_user_model

from chat import catalog
from chat.errors import ChatError
from chat.models import ModelAccess, Preferences, Thread

User = get_user_model()


# How long a process keeps the operator's ModelAccess table before reading it again: a start
# costs no query for it, and a change in the admin holds everywhere within this.
ACCESS_CACHE_SECONDS = 5.0
_access: tuple[float, dict[str, frozenset[int]]] = (-math.inf, {})


def _kept_to_groups() -> dict[str, frozenset[int]]:
    """Each model an operator kept to groups, with their ids (cached ACCESS_CACHE_SECONDS)."""
    global _access
    read_at, kept = _access
    if time.monotonic() - read_at > ACCESS_CACHE_SECONDS:
        rows = ModelAccess.objects.filter(groups__isnull=False).values_list("model", "groups")
        grouped: dict[str, set[int]] = {}
        for model, group in rows:
            grouped.setdefault(model, set()).add(group)
        kept = {model: frozenset(groups) for model, groups in grouped.items()}
        _access = (time.monotonic(), kept)
    return kept


def forget_access() -> None:
    """Read ModelAccess again at the next look (the admin calls this on a change)."""
    global _access
    _access = (-math.inf, {})


def restricted(*, user_id: int) -> set[str]:
    """The model ids kept to groups this user is not in (ModelAccess). With none kept to any
    group (the usual case), no query."""
    kept = _kept_to_groups()
    if not kept:
        return set()
    mine = set(
        User.groups.through.objects.filter(user_id=user_id).values_list("group_id", flat=True)
    )
    return {model for model, groups in kept.items() if not groups & mine}


def usable(*, user_id: int) -> list[catalog.Model]:
    """The models this user may see and use, the default first among equals. Synchronous ORM."""
    denied = restricted(user_id=user_id)
    return [m for m in catalog.models() if m.id not in denied]


def choose(*, user_id: int, model_id: object) -> catalog.Model:
    """The model a user asked for by id, if they may use it; else `bad_request`. Synchronous
    ORM."""
    if not isinstance(model_id, str) or not model_id:
        raise ChatError("bad_request", "`model` must be a model id from /api/models/.")
    chosen = catalog.get(model_id)
    if chosen is None or model_id in restricted(user_id=user_id):
        raise ChatError("bad_request", f"There is no model {model_id[:200]!r} available to you.")
    return chosen


def fallback(*, user_id: int, model_id: str) -> catalog.Model:
    """The model a thread whose model is `model_id` uses now: that one while it is configured
    and the user may use it, else the default (else the first they may use). Synchronous ORM."""
    denied = restricted(user_id=user_id)
    kept = catalog.get(model_id)
    if kept is not None and kept.id not in denied:
        return kept
    usable_now = [m for m in catalog.models() if m.id not in denied]
    if not usable_now:
        raise ChatError("bad_request", "No model is available to you; ask an operator.")
    return next((m for m in usable_now if m.default), usable_now[0])


def for_reply(
    *, user_id: int, thread_id: str, asked: str | None, new_thread: bool
) -> catalog.Model:
    """The model a reply uses: the one asked for (which the user must be allowed), else the
    thread's (a new thread's: the user's last choice), else, when that is no longer offered to
    them, the default. Synchronous ORM."""
    if asked is not None:
        return choose(user_id=user_id, model_id=asked)
    if new_thread:
        kept = Preferences.objects.filter(user_id=user_id).values_list("model", flat=True)
    else:
        kept = Thread.objects.filter(pk=thread_id).values_list("model", flat=True)
    return fallback(user_id=user_id, model_id=kept.first() or "")


def reply_choice(
    *, user_id: int, thread_id: str, asked: str | None, new_thread: bool
) -> tuple[catalog.Model, str]:
    """`for_reply`, and the user's own instructions to the agent (their settings page; ""
    for none), read in the same one query: the begin path's reads before its transaction."""
    if asked is not None or new_thread:
        row = Preferences.objects.filter(user_id=user_id).values_list("model", "instructions")
    else:
        row = Thread.objects.filter(pk=thread_id).values_list(
            "model", "owner__preferences__instructions"
        )
    kept, instructions = row.first() or ("", "")
    if asked is not None:
        return choose(user_id=user_id, model_id=asked), instructions or ""
    return fallback(user_id=user_id, model_id=kept or ""), instructions or ""
