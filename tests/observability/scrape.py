"""Reading a ``/metrics`` answer the way Prometheus does."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families


class Scrape:
    """The samples of one scrape, looked up by name and labels."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: list[tuple[str, dict[str, str], float]] = [
            (s.name, dict(s.labels), s.value)
            for family in text_string_to_metric_families(text)
            for s in family.samples
        ]

    def series(self, name: str, **labels: str) -> list[tuple[dict[str, str], float]]:
        """Every sample called ``name`` whose labels include ``labels``."""
        return [
            (found, value)
            for sample, found, value in self.samples
            if sample == name and all(found.get(k) == v for k, v in labels.items())
        ]

    def value(self, name: str, **labels: str) -> float:
        """The sum of the matching samples (0 when there is none)."""
        return sum(value for _, value in self.series(name, **labels))

    def has(self, name: str, **labels: str) -> bool:
        """Whether a matching sample exists."""
        return bool(self.series(name, **labels))


def scrape(client: Any, headers: dict[str, str]) -> Scrape:
    """``GET /metrics`` with ``headers``, checked to be Prometheus's text format."""
    answer = client.get("/metrics", headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    return Scrape(answer.text)
