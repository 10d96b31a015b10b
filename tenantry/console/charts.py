"""Usage charts as server-rendered SVG: one bar per day, every bar labelled with its value in
text (readable without colour, and by a screen reader through each bar's title)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from tenantry.services.usage import UsageDay

WIDTH = 600
HEIGHT = 160
TOP = 18  # room for the value above the tallest bar
BOTTOM = 20  # room for the date labels


@dataclass(frozen=True)
class Bar:
    """One day's bar: its box, its value and the label shown under it (every 5th day)."""

    x: float
    y: float
    width: float
    height: float
    value: int
    day: date
    label: str | None
    #: Where the day label is anchored (the last day's ends at its bar, inside the chart).
    anchor: str = "middle"


@dataclass(frozen=True)
class Chart:
    """A bar chart of one measure over the last days, the days without a row at zero."""

    title: str
    bars: list[Bar]
    peak: int
    total: int
    width: int = WIDTH
    height: int = HEIGHT

    @property
    def baseline(self) -> int:
        """Where the bars stand."""
        return self.height - BOTTOM


def bar_chart(
    title: str,
    days: Sequence[UsageDay],
    value: Callable[[UsageDay], int],
    *,
    last: date,
    span: int = 30,
) -> Chart:
    """``value`` of each of the ``span`` days up to ``last`` as a :class:`Chart`."""
    by_day = {d.date: value(d) for d in days}
    first = last - timedelta(days=span - 1)
    values = [
        (first + timedelta(days=i), by_day.get(first + timedelta(days=i), 0)) for i in range(span)
    ]
    peak = max((v for _, v in values), default=0)
    slot = WIDTH / span
    room = HEIGHT - TOP - BOTTOM
    bars = []
    for i, (day, v) in enumerate(values):
        height = 0.0 if peak == 0 else room * v / peak
        bars.append(
            Bar(
                x=round(i * slot + 1, 1),
                y=round(HEIGHT - BOTTOM - height, 1),
                width=round(slot - 2, 1),
                height=round(height, 1),
                value=v,
                day=day,
                # Every fifth day counted back from the last, so the last day is labelled.
                label=day.strftime("%m-%d") if (span - 1 - i) % 5 == 0 else None,
                anchor="end" if i == span - 1 else "middle",
            )
        )
    return Chart(title, bars, peak, sum(v for _, v in values))


@dataclass(frozen=True)
class CountBar:
    """One labelled horizontal bar: its label, its count, its share of the largest (0-100)
    and a text mark (``head``) that says what colour alone would otherwise say."""

    label: str
    count: int
    share: float
    mark: str | None = None


def count_bars(counts: dict[str, int], *, marked: str | None, mark: str) -> list[CountBar]:
    """``counts`` as horizontal bars, the largest first; the one named ``marked`` carries
    ``mark`` in text beside its count."""
    peak = max(counts.values(), default=0)
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [
        CountBar(
            label,
            n,
            0.0 if peak == 0 else round(100 * n / peak, 1),
            mark if label == marked else None,
        )
        for label, n in ordered
    ]
