"""The admin's usage dashboard (chat/usage_report.py): its totals are the ledger's, by day,
user and model, and its CSV export has the table."""

import csv
import datetime
import io

import pytest
from django.test import Client
from django.urls import reverse

from chat import quota, usage_report
from chat.models import ModelUsage

pytestmark = pytest.mark.django_db


def spend(user, model: str, *, inputs: int, outputs: int, ttft: int | None, failed=False, day=None):
    hold = quota.Hold(user.pk, day or quota.today(), 100, counted=False)
    quota.settle(
        hold,
        spent=outputs,
        model=model,
        input_tokens=inputs,
        outcome=quota.Outcome(failed=failed, first_token_ms=ttft),
    )


@pytest.fixture
def ledger(alice, bob):
    yesterday = quota.today() - datetime.timedelta(days=1)
    spend(alice, "gpt-4o", inputs=1000, outputs=100, ttft=300)
    spend(alice, "gpt-4o", inputs=2000, outputs=200, ttft=700)
    spend(alice, "llama", inputs=50, outputs=5, ttft=None, failed=True)
    spend(bob, "gpt-4o", inputs=400, outputs=40, ttft=1500, day=yesterday)


@pytest.fixture
def operator(django_user_model):
    client = Client()
    client.force_login(django_user_model.objects.create_superuser("op", password="op-pw"))
    return client


def test_the_report_sums_the_ledger_by_day_user_and_model(ledger, alice):
    start, end = quota.today() - datetime.timedelta(days=7), quota.today()
    in_ledger = {
        "input_tokens": sum(ModelUsage.objects.values_list("input_tokens", flat=True)),
        "output_tokens": sum(ModelUsage.objects.values_list("output_tokens", flat=True)),
    }
    assert in_ledger == {"input_tokens": 3450, "output_tokens": 345}
    for by in ("day", "user", "model"):
        rows, total = usage_report.report(start=start, end=end, by=by)
        assert (total.input_tokens, total.output_tokens) == (3450, 345)
        assert sum(r.replies for r in rows) == total.replies == 4 and total.errors == 1
    by_model = {r.key: r for r in usage_report.report(start=start, end=end, by="model")[0]}
    assert (by_model["gpt-4o"].replies, by_model["llama"].errors) == (3, 1)
    # gpt-4o's first tokens: 300 ms, 700 ms, 1500 ms: the median falls in (500, 1000].
    assert 500 < by_model["gpt-4o"].median_ttft_ms <= 1000
    assert by_model["llama"].median_ttft_ms is None, "no first token came"
    today_only = usage_report.report(start=quota.today(), end=quota.today(), by="user")[0]
    assert [(r.key, r.tokens) for r in today_only] == [("alice", 3355)]


def test_the_median_is_read_from_the_buckets():
    assert usage_report.median_ttft([0, 0, 0, 0, 0, 0, 0]) is None
    assert usage_report.median_ttft([2, 0, 0, 0, 0, 0, 0]) == 125
    assert usage_report.median_ttft([1, 1, 0, 0, 0, 0, 0]) == 250
    assert usage_report.median_ttft([0, 0, 0, 0, 0, 0, 3]) is None


def test_the_dashboard_shows_the_ledger_and_exports_csv(ledger, operator, alice):
    url = reverse("admin:chat_modelusage_dashboard")
    page = operator.get(url, {"by": "model"})
    assert page.status_code == 200
    assert "gpt-4o" in page.text and "3450" in page.text and "<svg" in page.text
    exported = operator.get(url, {"by": "user", "format": "csv"})
    rows = list(csv.reader(io.StringIO(exported.content.decode())))
    assert rows[0] == [
        "user",
        "input_tokens",
        "output_tokens",
        "replies",
        "errors",
        "median_ttft_ms",
    ]
    assert rows[-1][:5] == ["total", "3450", "345", "4", "1"]
    assert {row[0] for row in rows[1:-1]} == {"alice", "bob"}
    changelist = operator.get(reverse("admin:chat_modelusage_changelist"))
    assert url in changelist.text, "the ledger's list links to the dashboard"
    someone = Client()
    someone.force_login(alice)
    assert someone.get(url).status_code == 302, "staff only"
