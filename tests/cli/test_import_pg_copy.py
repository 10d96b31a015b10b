"""``tenantry import shared`` from a shared PostgreSQL database into PostgreSQL store
databases: the tables copied by COPY between the servers and verified by checksums the servers
compute (tenantry/imports/pg_copy.py), resumed after a kill, catching a changed row on either
side, and agreeing with the row-by-row path's Python verification on the same data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from sqlalchemy import Connection, select, text
from sqlalchemy.engine import URL

from tenantry.db.engines import make_engine
from tenantry.imports import pg_copy
from tenantry.imports.digest import Digest, target_digest
from tenantry.imports.mapping import load_mapping
from tenantry.imports.pg_copy import (
    RECORD_HASH,
    TEXT_MD5,
    SqlTable,
    binary_copy,
    column_types,
    source_checksum,
    source_checksums,
    sql_table,
    target_checksum,
    target_checksums,
)
from tenantry.imports.source import store_batches, store_filter
from tenantry.operations import import_copy
from tenantry.operations.import_shared import SharedImport
from tenantry.runtime import Platform
from tenantry.settings import load_settings
from tests.cli.conftest import Invoke, as_json, process_env
from tests.conftest import require_server
from tests.fixtures import shared_shop
from tests.imports.fixtures import (
    MAPPING,
    SourceFactory,
    admin_url,
    assert_exactly_once,
    raw,
    shared_source,
    shop_prefix,
    source_rows,
    store_rows,
    store_url,
)

__all__ = ["shared_source", "shop_prefix"]  # fixtures, imported to be found

#: The shared shop's tables the servers copy (categories, a tree, goes row by row).
BY_COPY = {"customers", "products", "product_categories", "orders", "order_items"}


def _args(source: URL, *extra: str) -> list[str]:
    return [
        "import",
        "shared",
        "--url",
        raw(source),
        "--map",
        str(MAPPING),
        "--create-stores",
        "--server",
        "main",
        *extra,
    ]


def _run_killed(tmp_path: Path, args: list[str], failpoint: str) -> None:
    killed = subprocess.run(
        [sys.executable, "-m", "tenantry", *args],
        env=process_env(tmp_path / "data", TENANTRY_FAILPOINTS=failpoint),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert killed.returncode == -9, killed.stderr[-3000:]


def _execute(url: URL, statement: str, **params: Any) -> Any:
    engine = make_engine(url, pool_size=1)
    try:
        with engine.begin() as conn:
            result = conn.execute(text(statement), params)
            return result.all() if result.returns_rows else []
    finally:
        engine.dispose()


def _setup(cli: Invoke, shared_source: SourceFactory, prefix: str, stores_count: int) -> URL:
    require_server("postgresql")
    source = shared_source("postgresql", prefix, stores_count=stores_count)
    assert cli("init").exit_code == 0
    assert cli("servers", "add", "main", "--url", admin_url("postgresql")).exit_code == 0
    return source


def test_copied_by_the_servers_killed_mid_copy_then_resumed(
    cli: Invoke, tmp_path: Path, shop_prefix: str, shared_source: SourceFactory
) -> None:
    source = _setup(cli, shared_source, shop_prefix, 3)
    before = shared_shop.source_digests(source)
    victim = f"{shop_prefix}-002"
    args = _args(source, "--concurrency", "2", "--batch-rows", "10")
    _run_killed(tmp_path, args, f"import.batch.{victim}.order_items.2=kill")

    # Killed between two COPY batches: some order items in, each batch with its cursor row;
    # the cursor of a table copied by COPY carries no Python checksum (the servers verify).
    partial = sum(store_rows(victim, "order_items", ["id"]).values())
    assert 0 < partial < sum(source_rows(source, "order_items", 2, ["id"]).values())
    assert partial % 10 == 0
    cursor = dict(
        _execute(
            store_url(victim),
            "SELECT table_name, digest IS NULL FROM tenantry_import_cursor WHERE table_name <> '*'",
        )
    )
    assert cursor["order_items"] is True
    assert cursor["orders"] is True
    assert cursor["categories"] is False  # the tree: row by row, hashed in Python

    resumed = cli(*args, "--json")
    assert resumed.exit_code == 0, resumed.output
    outcomes = {o["store"]: o for o in as_json(resumed)["stores"]}
    assert outcomes[victim]["status"] == "succeeded"
    assert outcomes[victim]["resumed"] is True
    for table in outcomes[victim]["tables"].values():
        assert table["verified"] == table["rows"] == table["copied"]
    assert_exactly_once(source, shop_prefix, 3)
    assert shared_shop.source_digests(source) == before  # the source was only read


def _one_order(url: URL, store_id: int | None = None) -> Any:
    where = "" if store_id is None else f"WHERE store_id = {store_id}"
    return _execute(url, f"SELECT id FROM orders {where} ORDER BY id LIMIT 1")[0][0]


def test_verification_catches_a_row_changed_in_the_source(
    cli: Invoke, tmp_path: Path, shop_prefix: str, shared_source: SourceFactory
) -> None:
    source = _setup(cli, shared_source, shop_prefix, 2)
    victim = f"{shop_prefix}-001"
    args = _args(source, "--concurrency", "1")
    _run_killed(tmp_path, args, f"import.after_copy.{victim}=kill")  # copied, not verified
    _execute(
        source,
        "UPDATE orders SET email = 'changed@example.com' WHERE id = :id",
        id=_one_order(source, 1),
    )
    _expect_caught(cli, args, victim, shop_prefix)


def test_verification_catches_a_row_changed_in_the_store_database(
    cli: Invoke, tmp_path: Path, shop_prefix: str, shared_source: SourceFactory
) -> None:
    source = _setup(cli, shared_source, shop_prefix, 2)
    victim = f"{shop_prefix}-001"
    args = _args(source, "--concurrency", "1")
    _run_killed(tmp_path, args, f"import.after_copy.{victim}=kill")
    url = store_url(victim)
    _execute(
        url, "UPDATE orders SET total_minor = total_minor + 1 WHERE id = :id", id=_one_order(url)
    )
    _expect_caught(cli, args, victim, shop_prefix)


def _expect_caught(cli: Invoke, args: list[str], victim: str, prefix: str) -> None:
    result = cli(*args, "--json")
    assert result.exit_code == 1, result.output
    outcomes = {o["store"]: o for o in as_json(result)["stores"]}
    assert outcomes[victim]["status"] == "failed"
    error = outcomes[victim]["error"]
    assert "orders: same" in error, error
    assert "different content" in error
    assert "put back as it was" in error
    assert outcomes[f"{prefix}-002"]["status"] == "succeeded"  # the other store carried on
    assert sum(store_rows(victim, "orders", ["id"]).values()) == 0


def test_server_checksums_and_python_digests_agree_on_the_same_data(
    cli: Invoke, shop_prefix: str, shared_source: SourceFactory
) -> None:
    """After an import the servers copied, the Python verification of the row-by-row path
    (each source row converted in Python and hashed, against the tenant table read back)
    finds the same rows: the SQL the servers ran wrote what Python would have."""
    source = _setup(cli, shared_source, shop_prefix, 2)
    result = cli(*_args(source, "--json"))
    assert result.exit_code == 0, result.output
    slug = f"{shop_prefix}-001"
    platform = Platform.open(load_settings())
    job = SharedImport(platform, source, load_mapping(MAPPING), "test")
    target = make_engine(store_url(slug), pool_size=1)
    try:
        plan = job.plan()
        store = next(t for t in plan.stores if t.slug == slug)
        with job.source.connect() as src, target.connect() as dst:
            in_sql = set()
            copied: list[tuple[SqlTable, Any]] = []
            for name, st in plan.tables.items():
                condition = store_filter(plan.tables, plan.mapping, name, store.key)
                python = Digest(st.target, st.hashed_columns)
                for batch in store_batches(src, st, condition, after=None, batch_rows=500):
                    python.add(st.convert(r) for r in batch)
                read_back = target_digest(dst, st.target, st.hashed_columns)
                assert python.result() == read_back, name
                assert read_back.rows > 0, name
                table = sql_table(
                    st, column_types(src, st.table.name), column_types(dst, st.target.name)
                )
                if table is None:
                    continue
                in_sql.add(name)
                copied.append((table, condition))
                for method in (RECORD_HASH, TEXT_MD5):  # PostgreSQL 14+, and older servers
                    in_source = source_checksum(src, table, condition, method)
                    assert in_source == target_checksum(dst, table, method), (name, method)
                src.rollback()
                dst.rollback()
            assert in_sql == BY_COPY
            # Every table's checksum in one query per side (as the verification asks them):
            # the same as one by one, each in its place.
            for method in (RECORD_HASH, TEXT_MD5):
                each = [source_checksum(src, t, c, method) for t, c in copied]
                assert source_checksums(src, copied, method) == each
                assert target_checksums(dst, [t for t, _ in copied], method) == each
                assert len(set(each)) == len(each)  # tables told apart, not summed together
            src.rollback()
            dst.rollback()
    finally:
        target.dispose()
        job.close()
        platform.close()


@pytest.mark.parametrize("binary", [True, False])
def test_copied_in_binary_or_as_text_and_verified_either_way(
    cli: Invoke,
    shop_prefix: str,
    shared_source: SourceFactory,
    monkeypatch: pytest.MonkeyPatch,
    binary: bool,
) -> None:
    """The shop's tables have portable types only: COPY streams them in binary between the
    servers. The text form (other types) copies and verifies the same rows."""
    source = _setup(cli, shared_source, shop_prefix, 2)
    before = shared_shop.source_digests(source)
    formats: list[bool] = []
    real = pg_copy.copy_batch

    def spy(src: Connection, dst: Connection, table: SqlTable, query: Any, **kw: Any) -> Any:
        formats.append(kw["binary"])
        return real(src, dst, table, query, **kw)

    monkeypatch.setattr(import_copy, "copy_batch", spy)
    if not binary:
        monkeypatch.setattr(import_copy, "binary_copy", lambda *_: False)
    result = cli(*_args(source, "--json"))
    assert result.exit_code == 0, result.output
    assert len(formats) == 2 * len(BY_COPY)  # a batch per table (fewer rows than a batch)
    assert set(formats) == {binary}
    for outcome in as_json(result)["stores"]:
        assert outcome["status"] == "succeeded"
        assert outcome["bytes"] > 0
        for table in outcome["tables"].values():
            assert table["verified"] == table["rows"] == table["copied"]
    assert_exactly_once(source, shop_prefix, 2)
    assert shared_shop.source_digests(source) == before


def test_binary_copy_only_for_portable_types_within_one_major_version() -> None:
    def conn(version: tuple[int, ...]) -> Connection:
        dialect = SimpleNamespace(server_version_info=version)
        return cast(Connection, SimpleNamespace(dialect=dialect))

    def table(*types: str) -> SqlTable:
        return cast(SqlTable, SimpleNamespace(types=list(types)))

    portable = table(
        "uuid",
        "character varying(255)",
        "character(3)",
        "timestamp with time zone",
        "jsonb",
        "numeric(12,2)",
        "bigint",
        "boolean",
    )
    assert binary_copy(conn((16, 2)), conn((16, 4)), portable)
    assert not binary_copy(conn((15, 8)), conn((16, 4)), portable)  # forms differ by version
    # Their binary forms carry OIDs of the source database: text then.
    assert not binary_copy(conn((16,)), conn((16,)), table("uuid", "integer[]"))
    assert not binary_copy(conn((16,)), conn((16,)), table("uuid", "mood"))  # an enum


def test_via_tables_are_read_by_their_parent_keys_through_an_index_else_by_a_join(
    cli: Invoke, shop_prefix: str, shared_source: SourceFactory
) -> None:
    """A ``via`` table whose via column leads an index (order_items.order_id, the primary key
    of product_categories) is read by its store's parent keys as an array, which the server
    looks up in that index (each store's read costs its own rows, not the whole table); once
    the index is dropped, by the join again. Either way a store gets exactly its rows."""
    source = _setup(cli, shared_source, shop_prefix, 3)
    platform = Platform.open(load_settings())
    job = SharedImport(platform, source, load_mapping(MAPPING), "test")

    def plain(values: Any) -> set[str]:
        return {str(v).replace("-", "") for v in values}

    def read_by_plan() -> dict[str, str]:
        """Each via table's condition as the source runs it; asserts the rows it selects."""
        plan = job.plan(create_stores=True)
        assert len(plan.stores) == 3
        forms = {}
        with job.source.connect() as src:
            for name, parent, column in (
                ("order_items", "orders", "order_id"),
                ("product_categories", "products", "product_id"),
            ):
                table = plan.tables[name].table
                for store in plan.stores:
                    condition = store_filter(plan.tables, plan.mapping, name, store.key)
                    forms[name] = str(condition.compile(src))
                    got = plain(src.scalars(select(table.c[column]).where(condition)))
                    parents = plain(k[0] for k in source_rows(source, parent, store.key, ["id"]))
                    assert got, (name, store.slug)
                    assert got <= parents, (name, store.slug)
                    if name == "order_items":  # exactly the store's items, none of the others
                        ids = plain(src.scalars(select(table.c.id).where(condition)))
                        want = source_rows(source, name, store.key, ["id"])
                        assert ids == plain(k[0] for k in want), store.slug
        return forms

    try:
        forms = read_by_plan()
        assert "= ANY (array((SELECT" in forms["order_items"], forms
        assert "= ANY (array((SELECT" in forms["product_categories"], forms
        _execute(source, "DROP INDEX ix_order_items_order_id")
        forms = read_by_plan()
        assert "order_items.order_id IN (SELECT" in forms["order_items"], forms
        assert "= ANY (array((SELECT" in forms["product_categories"], forms  # its primary key
    finally:
        job.close()
        platform.close()
    # Imported by the join: every store's rows exactly once.
    result = cli(*_args(source, "--json"))
    assert result.exit_code == 0, result.output
    assert_exactly_once(source, shop_prefix, 3)
