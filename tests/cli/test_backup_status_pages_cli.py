"""`tenantry backup status` a page at a time: master and billing first, then --limit stores in
slug order, the next page's command printed, every store walked once (as `GET /backups/status`
pages them)."""

from __future__ import annotations

from tenantry.db import migrations
from tenantry.runtime import Platform
from tenantry.settings import load_settings
from tests.cli.conftest import Invoke, as_json
from tests.master_rows import seed_stores, slug_of

STORES = 7


def test_backup_status_pages_and_says_how_to_get_the_next(cli: Invoke) -> None:
    assert cli("init").exit_code == 0
    platform = Platform.open(load_settings())
    try:
        head = migrations.head(platform.tenant_spec)
        assert head is not None
        seed_stores(platform.sessions, STORES, head=head)
    finally:
        platform.close()
    every = [f"store:{slug_of(n)}" for n in range(STORES)]

    first = cli("backup", "status", "--limit", "3", env={"COLUMNS": "200"})

    assert first.exit_code == 1, first.output  # nothing is backed up yet: unprotected
    for scope in ["master", "billing", *every[:3]]:
        assert scope in first.stdout
    assert every[3] not in first.stdout
    assert f"tenantry backup status --limit 3 --cursor {slug_of(2)}" in first.stdout

    seen: list[str] = []
    cursor: list[str] = []
    sizes: list[int] = []
    while True:
        page = as_json(cli("backup", "status", "--limit", "3", *cursor, "--json"))
        assert page["limit"] == 3
        assert all(not row["protected"] and row["backup_due"] for row in page["databases"])
        sizes.append(len(page["databases"]))
        seen += [row["scope"] for row in page["databases"]]
        if page["next_cursor"] is None:
            break
        assert page["next_cursor"] == seen[-1].removeprefix("store:")
        cursor = ["--cursor", page["next_cursor"]]
    assert seen == ["master", "billing", *every]  # each database once, in order
    assert sizes == [5, 3, 1]

    last = cli("backup", "status", "--limit", "3", "--cursor", slug_of(5), env={"COLUMNS": "200"})
    assert every[6] in last.stdout
    assert "--cursor" not in last.stdout  # the last page names no next one
    bad = cli("backup", "status", "--limit", "501")
    assert bad.exit_code != 0
    assert "limit 501 is out of range" in bad.stderr
    assert "1 to 500" in bad.stderr
