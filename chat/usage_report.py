"""The admin's usage dashboard: the token ledger (ModelUsage, what enforces the quotas) summed
over a range of days by day, user or model. Never a scan of messages: one grouped query."""

import datetime
from dataclasses import dataclass

from django.db.models import Sum

from chat.models import ModelUsage

GROUPINGS = {"day": "day", "user": "user__username", "model": "model"}
TTFT_COLUMNS = [f"ttft_{n}" for n in range(1, len(ModelUsage.TTFT_BUCKETS_MS) + 1)]
SUMMED = ["input_tokens", "output_tokens", "replies", "errors", *TTFT_COLUMNS]


@dataclass(frozen=True)
class Row:
    """One group's sums over the range."""

    key: str
    input_tokens: int
    output_tokens: int
    replies: int
    errors: int
    median_ttft_ms: int | None  # None: no reply, or the median reply had no first token

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


def report(*, start: datetime.date, end: datetime.date, by: str) -> tuple[list[Row], Row]:
    """The rows grouped `by` day, user or model between `start` and `end` (inclusive), and
    their total."""
    field = GROUPINGS[by]
    sums = {column: Sum(column) for column in SUMMED}
    grouped = (
        ModelUsage.objects.filter(day__gte=start, day__lte=end)
        .values(field)
        .annotate(**sums)
        .order_by(field)
    )
    groups = [(str(group[field]), _ints(group)) for group in grouped]
    total = {column: sum(sums[column] for _, sums in groups) for column in SUMMED}
    return [_row(key, sums) for key, sums in groups], _row("total", total)


def _ints(sums: dict) -> dict[str, int]:
    return {column: int(sums.get(column) or 0) for column in SUMMED}


def _row(key: str, sums: dict[str, int]) -> Row:
    return Row(
        key=key,
        input_tokens=sums["input_tokens"],
        output_tokens=sums["output_tokens"],
        replies=sums["replies"],
        errors=sums["errors"],
        median_ttft_ms=median_ttft([sums[c] for c in TTFT_COLUMNS]),
    )


def median_ttft(counts: list[int]) -> int | None:
    """The median time to first token from the ledger's buckets, interpolated inside the
    bucket it falls in; None when there are no replies or it falls past the last bound."""
    total = sum(counts)
    if not total:
        return None
    half, seen, lower = total / 2, 0, 0
    for count, bound in zip(counts, ModelUsage.TTFT_BUCKETS_MS, strict=True):
        if count and seen + count >= half:
            if bound is None:
                return None
            return round(lower + (bound - lower) * (half - seen) / count)
        seen += count
        lower = bound or lower
    return None
