"""The console's parts that need no server: where sign-in may send a user on, the usage
chart's geometry, and how ages are written."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from tenantry.console.auth import HOME, safe_next
from tenantry.console.charts import HEIGHT, bar_chart, count_bars
from tenantry.console.templating import age
from tenantry.services.usage import UsageDay


@pytest.mark.parametrize(
    ("asked", "sent_to"),
    [
        ("/console/stores/acme", "/console/stores/acme"),
        ("/console/operations?status=running", "/console/operations?status=running"),
        ("https://evil.example/console/", HOME),
        ("//evil.example/console/", HOME),
        ("/console//evil.example", HOME),
        ("/docs", HOME),
        ("", HOME),
        (None, HOME),
    ],
)
def test_sign_in_only_goes_on_to_a_console_page(asked: str | None, sent_to: str) -> None:
    assert safe_next(asked) == sent_to


def _day(day: date, calls: int) -> UsageDay:
    return UsageDay(day, 0, 0, 0, 0, 0, 0, 0, 0, 0, calls, 0)


def test_the_chart_has_a_bar_per_day_scaled_to_the_peak_and_zero_for_missing_days() -> None:
    last = date(2026, 12, 4)
    days = [_day(last, 40), _day(last - timedelta(days=2), 20), _day(last - timedelta(days=40), 99)]
    chart = bar_chart("API calls", days, lambda d: d.api_calls, last=last)
    assert len(chart.bars) == 30
    assert chart.bars[0].day == last - timedelta(days=29)
    assert chart.bars[-1].day == last
    assert [b.value for b in chart.bars[-3:]] == [20, 0, 40]
    assert chart.peak == 40  # a day outside the 30 is not counted
    assert chart.total == 60
    assert chart.bars[-3].height == pytest.approx(chart.bars[-1].height / 2, abs=0.1)
    assert chart.bars[-1].y + chart.bars[-1].height == pytest.approx(chart.baseline)
    assert chart.bars[-1].y >= 0
    assert chart.baseline < HEIGHT
    labelled = [b for b in chart.bars if b.label]
    assert labelled[-1].day == last
    assert labelled[-1].anchor == "end"
    empty = bar_chart("API calls", [], lambda d: d.api_calls, last=last)
    assert {b.height for b in empty.bars} == {0.0}
    assert empty.peak == 0


def test_ages_are_written_in_the_largest_whole_unit() -> None:
    now = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    assert age(None, now) == "never"
    assert age(now - timedelta(seconds=5), now) == "5 s"
    assert age(now - timedelta(minutes=7, seconds=59), now) == "7 min"
    assert age(now - timedelta(hours=3), now) == "3 h"
    assert age((now - timedelta(days=2)).replace(tzinfo=None), now) == "2 d"


def test_count_bars_say_in_text_what_the_colour_says() -> None:
    bars = count_bars({"0002": 10, "0001": 30, "unknown": 0}, marked="0002", mark="head")
    # The largest first, each scaled to it, the head marked in words.
    assert [(b.label, b.count, b.share, b.mark) for b in bars] == [
        ("0001", 30, 100.0, None),
        ("0002", 10, 33.3, "head"),
        ("unknown", 0, 0.0, None),
    ]
    assert count_bars({}, marked=None, mark="head") == []
