"""`tenantry fleet status --limit N --cursor C`: whole counts, the lagging stores a page at a
time, and the command for the next page printed."""

from __future__ import annotations

from tenantry.db import migrations
from tenantry.runtime import Platform
from tenantry.settings import load_settings
from tests.cli.conftest import Invoke, as_json
from tests.master_rows import seed_stores, slug_of


def test_fleet_status_pages_and_says_how_to_get_the_next(cli: Invoke) -> None:
    assert cli("init").exit_code == 0
    platform = Platform.open(load_settings())
    try:
        head = migrations.head(platform.tenant_spec)
        assert head is not None
        seed_stores(platform.sessions, 30, head=head, behind_every=3)
    finally:
        platform.close()
    lagging = [slug_of(n) for n in range(0, 30, 3)]

    first = cli("fleet", "status", "--limit", "4", env={"COLUMNS": "200"})

    assert first.exit_code == 0, first.output
    assert "30 tenant database(s)" in first.stdout
    assert "10 lagging, 0 failed" in first.stdout
    assert f"lagging (this page): {', '.join(lagging[:4])}" in first.stdout
    assert f"tenantry fleet status --limit 4 --cursor {lagging[3]}" in first.stdout

    seen: list[str] = []
    cursor: list[str] = []
    while True:
        page = as_json(cli("fleet", "status", "--limit", "4", *cursor, "--json"))
        assert (page["total"], page["lagging_total"], page["failed_total"]) == (30, 10, 0)
        seen += page["lagging"]
        if page["next_cursor"] is None:
            break
        cursor = ["--cursor", page["next_cursor"]]
    assert seen == lagging  # each lagging store once, in slug order

    last = cli("fleet", "status", "--limit", "4", "--cursor", lagging[7])
    assert last.exit_code == 0, last.output
    assert "--cursor" not in last.stdout  # the last page names no next one
    bad = cli("fleet", "status", "--limit", "0")
    assert bad.exit_code != 0
    assert "limit 0 is out of range" in bad.stderr
    assert "1 to 1000" in bad.stderr
