"""The destructive-change linter, run on hand-written revisions in a temporary script directory."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from sqlalchemy import MetaData

from tenantry.db import migrations
from tenantry.db.lint import lint_pending, lint_scripts
from tenantry.db.lint.findings import Finding
from tenantry.db.schemas import Role, SchemaSpec
from tests.revision_scripts import ENV_PY, revision_script


def make_spec(directory: Path, *bodies: str) -> SchemaSpec:
    """A script directory whose revisions 0001, 0002, ... run ``bodies`` in order.

    ``migrations.scripts`` is cached per spec; each test's own ``tmp_path`` keeps specs apart.
    """
    versions = directory / "versions"
    versions.mkdir(parents=True)
    (directory / "env.py").write_text(ENV_PY)
    down: str | None = None
    for number, body in enumerate(bodies, start=1):
        revision = f"{number:04d}"
        code = textwrap.indent(textwrap.dedent(body).strip(), "    ")
        text = revision_script(revision, down, code)
        (versions / f"{revision}_lint.py").write_text(text)
        down = revision
    return SchemaSpec(Role.TENANT, "lintshop", MetaData(), directory)


def lint(directory: Path, *bodies: str) -> list[Finding]:
    """Findings of upgrading an empty database through ``bodies``."""
    return lint_pending(make_spec(directory, *bodies), None, "head")


def only(findings: list[Finding]) -> Finding:
    assert len(findings) == 1, findings
    return findings[0]


def summary(findings: list[Finding]) -> list[tuple[str, str | None, str | None, bool]]:
    return [(f.operation, f.table, f.column, f.destructive) for f in findings]


def test_drop_table_is_destructive(tmp_path: Path) -> None:
    finding = only(lint(tmp_path, 'op.drop_table("orders")'))
    assert finding == Finding(
        "0001", "drop_table", "orders", None, finding.detail, destructive=True
    )
    assert "orders" in finding.detail
    assert "every row" in finding.detail


def test_drop_column_is_destructive(tmp_path: Path) -> None:
    finding = only(lint(tmp_path, 'op.drop_column("orders", "note")'))
    assert summary([finding]) == [("drop_column", "orders", "note", True)]
    assert "orders.note" in finding.detail


def test_drop_of_a_column_the_revision_copied_first_is_reported_not_refused(
    tmp_path: Path,
) -> None:
    spec = make_spec(tmp_path, 'op.drop_column("orders", "note")\nop.drop_column("orders", "tag")')
    script = tmp_path / "versions" / "0001_lint.py"
    script.write_text(
        script.read_text() + '\nCOPIED_BEFORE_DROP = {"orders.note": "archive.note"}\n'
    )
    findings = lint_pending(spec, None, "head")
    assert summary(findings) == [
        ("drop_column", "orders", "note", False),
        ("drop_column", "orders", "tag", True),
    ]
    assert "copied to archive.note" in findings[0].detail


def test_drop_of_a_table_the_revision_copied_first_is_reported_not_refused(
    tmp_path: Path,
) -> None:
    spec = make_spec(tmp_path, 'op.drop_table("locks")\nop.drop_table("orders")')
    script = tmp_path / "versions" / "0001_lint.py"
    script.write_text(script.read_text() + '\nCOPIED_BEFORE_DROP = {"locks": "leases"}\n')
    findings = lint_pending(spec, None, "head")
    assert summary(findings) == [
        ("drop_table", "locks", None, False),
        ("drop_table", "orders", None, True),
    ]
    assert "copied to leases" in findings[0].detail


@pytest.mark.parametrize(
    ("existing", "new"),
    [
        ("sa.String(50)", "sa.String(20)"),
        ("sa.String()", "sa.String(20)"),
        ("sa.Numeric(10, 2)", "sa.Numeric(8, 2)"),
        ("sa.Numeric(10, 4)", "sa.Numeric(10, 2)"),
        ("sa.Numeric(10, 2)", "sa.Numeric(10, 4)"),
        ("sa.Numeric()", "sa.Numeric(12, 2)"),
        ("sa.BigInteger()", "sa.Integer()"),
        ("sa.BigInteger", "sa.SmallInteger"),
        ("sa.Integer()", "sa.SmallInteger()"),
        ("sa.Text()", "sa.String(200)"),
        ("sa.String(20)", "sa.Integer()"),
        ("sa.Numeric(10, 2)", "sa.Integer()"),
        ("sa.Float()", "sa.Numeric(10, 2)"),
        ("sa.BigInteger()", "sa.Float()"),
        ("sa.DateTime(timezone=True)", "sa.DateTime()"),
        ("sa.DateTime()", "sa.Date()"),
        ("sa.Enum('a', 'b', name='kind')", "sa.Enum('a', name='kind')"),
        ("sa.String(10)", "sa.Enum('a', name='kind')"),
    ],
)
def test_narrowing_type_is_destructive(tmp_path: Path, existing: str, new: str) -> None:
    finding = only(
        lint(tmp_path, f'op.alter_column("orders", "total", type_={new}, existing_type={existing})')
    )
    assert summary([finding]) == [("narrow_type", "orders", "total", True)]
    assert finding.detail.startswith("alter_column changes orders.total from ")
    assert "which" in finding.detail


@pytest.mark.parametrize(
    ("existing", "new"),
    [
        ("sa.String(20)", "sa.String(50)"),
        ("sa.String(20)", "sa.Text()"),
        ("sa.String(20)", "sa.String()"),
        ("sa.Integer()", "sa.BigInteger()"),
        ("sa.SmallInteger", "sa.Integer"),
        ("sa.Numeric(8, 2)", "sa.Numeric(10, 2)"),
        ("sa.Numeric(8, 2)", "sa.Numeric(10, 4)"),
        ("sa.Numeric(8, 2)", "sa.Numeric()"),
        ("sa.Integer()", "sa.Numeric(12, 2)"),
        ("sa.Numeric(9)", "sa.Integer()"),
        ("sa.Date()", "sa.DateTime()"),
        ("sa.DateTime()", "sa.DateTime(timezone=True)"),
        ("sa.Enum('a', name='kind')", "sa.Enum('a', 'b', name='kind')"),
        ("sa.Enum('abc', name='kind')", "sa.String(3)"),
        ("sa.JSON()", "sa.JSON()"),
    ],
)
def test_widening_type_is_not_flagged(tmp_path: Path, existing: str, new: str) -> None:
    body = f'op.alter_column("orders", "total", type_={new}, existing_type={existing})'
    assert lint(tmp_path, body) == []


def test_type_change_without_existing_type_is_destructive(tmp_path: Path) -> None:
    finding = only(lint(tmp_path, 'op.alter_column("orders", "total", type_=sa.BigInteger())'))
    assert summary([finding]) == [("narrow_type", "orders", "total", True)]
    assert "orders.total" in finding.detail
    assert "old type is unknown" in finding.detail
    assert "existing_type=" in finding.detail


@pytest.mark.parametrize("existing_nullable", ["True", "None"])
def test_set_not_null_on_nullable_column_is_destructive(
    tmp_path: Path, existing_nullable: str
) -> None:
    body = f"""
        op.alter_column(
            "orders", "email", nullable=False, existing_type=sa.String(80),
            existing_nullable={existing_nullable},
        )
    """
    finding = only(lint(tmp_path, body))
    assert summary([finding]) == [("set_not_null", "orders", "email", True)]
    assert "orders.email" in finding.detail
    assert "NULL" in finding.detail


def test_not_null_on_a_not_null_column_is_not_flagged(tmp_path: Path) -> None:
    body = 'op.alter_column("orders", "email", nullable=False, existing_nullable=False)'
    assert lint(tmp_path, body) == []


def test_add_not_null_column_to_existing_table_is_destructive(tmp_path: Path) -> None:
    body = 'op.add_column("orders", sa.Column("status", sa.String(20), nullable=False))'
    finding = only(lint(tmp_path, body))
    assert summary([finding]) == [("add_not_null_column", "orders", "status", True)]
    assert "orders.status" in finding.detail
    assert "server_default" in finding.detail


def test_rename_table_is_destructive(tmp_path: Path) -> None:
    finding = only(lint(tmp_path, 'op.rename_table("orders", "purchases")'))
    assert summary([finding]) == [("rename_table", "orders", None, True)]
    assert "orders" in finding.detail
    assert "purchases" in finding.detail


def test_rename_column_is_destructive(tmp_path: Path) -> None:
    body = 'op.alter_column("orders", "note", new_column_name="remark")'
    finding = only(lint(tmp_path, body))
    assert summary([finding]) == [("rename_column", "orders", "note", True)]
    assert "orders.note" in finding.detail
    assert "remark" in finding.detail


@pytest.mark.parametrize(
    ("sql", "table", "column"),
    [
        ("DROP TABLE orders", "orders", None),
        ("truncate table orders", "orders", None),
        ("DELETE FROM orders WHERE total = 0", "orders", None),
        ('ALTER TABLE "shop"."orders" DROP COLUMN note', "orders", "note"),
    ],
)
def test_destructive_raw_sql(tmp_path: Path, sql: str, table: str, column: str | None) -> None:
    finding = only(lint(tmp_path, f"op.execute({sql!r})"))
    assert summary([finding]) == [("raw_sql", table, column, True)]
    assert table in finding.detail
    assert sql.split()[0].upper() in finding.detail


def test_destructive_sqlalchemy_statement(tmp_path: Path) -> None:
    body = 'op.execute(sa.table("orders").delete())'
    assert summary(lint(tmp_path, body)) == [("raw_sql", "orders", None, True)]


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE orders SET total = 0",
        "CREATE TABLE lines (order_id int REFERENCES orders ON DELETE CASCADE)",
        "INSERT INTO notes (body) VALUES ('please drop by')",
        "ALTER TABLE orders ALTER COLUMN note DROP NOT NULL",
    ],
)
def test_other_raw_sql_is_reported_but_not_destructive(tmp_path: Path, sql: str) -> None:
    finding = only(lint(tmp_path, f"op.execute({sql!r})"))
    assert summary([finding]) == [("raw_sql", None, None, False)]
    assert finding.detail.startswith("raw SQL not checked")


PLAIN_OPS = """
    op.drop_column("orders", "note")
    op.alter_column("orders", "total", type_=sa.Integer(), existing_type=sa.BigInteger())
    op.alter_column("orders", "email", nullable=False, existing_type=sa.String(80))
    op.alter_column("orders", "ref", new_column_name="reference")
    op.add_column("orders", sa.Column("status", sa.String(20), nullable=False))
    op.execute("DELETE FROM orders")
"""

BATCH_OPS = """
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_column("note")
        batch_op.alter_column("total", type_=sa.Integer(), existing_type=sa.BigInteger())
        batch_op.alter_column("email", nullable=False, existing_type=sa.String(80))
        batch_op.alter_column("ref", new_column_name="reference")
        batch_op.add_column(sa.Column("status", sa.String(20), nullable=False))
        batch_op.execute("DELETE FROM orders")
"""


def test_batch_mode_is_caught_like_plain_operations(tmp_path: Path) -> None:
    plain = lint(tmp_path / "plain", PLAIN_OPS)
    batch = lint(tmp_path / "batch", BATCH_OPS)
    expected = [
        ("drop_column", "orders", "note", True),
        ("narrow_type", "orders", "total", True),
        ("set_not_null", "orders", "email", True),
        ("rename_column", "orders", "ref", True),
        ("add_not_null_column", "orders", "status", True),
        ("raw_sql", "orders", None, True),
    ]
    assert summary(plain) == expected
    assert summary(batch) == expected
    assert [f.detail for f in batch] == [f.detail for f in plain]


def test_batch_drop_table_inside_other_batches(tmp_path: Path) -> None:
    body = """
        with op.batch_alter_table("orders") as batch_op:
            batch_op.create_index("ix_orders_total", ["total"])
        op.drop_table("carts")
        with op.batch_alter_table("lines") as batch_op:
            batch_op.drop_column("sku")
    """
    assert summary(lint(tmp_path, body)) == [
        ("drop_table", "carts", None, True),
        ("drop_column", "lines", "sku", True),
    ]


def test_safe_revision_has_no_findings(tmp_path: Path) -> None:
    body = """
        table = op.create_table(
            "coupons",
            sa.Column("id", sa.Integer(), primary_key=True),
            sa.Column("code", sa.String(20), nullable=False),
        )
        op.bulk_insert(table, [{"id": 1, "code": "WELCOME"}])
        op.add_column("orders", sa.Column("coupon_id", sa.Integer(), nullable=True))
        op.create_index("ix_orders_coupon_id", "orders", ["coupon_id"])
        op.add_column(
            "orders", sa.Column("channel", sa.String(20), nullable=False, server_default="web")
        )
        with op.batch_alter_table("lines") as batch_op:
            batch_op.add_column(sa.Column("gift", sa.Boolean(), nullable=True))
            batch_op.create_index("ix_lines_gift", ["gift"])
        if op.get_context().dialect.name != "sqlite":
            op.alter_column("orders", "channel", server_default=None)
    """
    assert lint(tmp_path, body) == []


def test_not_null_column_on_a_table_created_by_an_earlier_pending_revision(
    tmp_path: Path,
) -> None:
    create = 'op.create_table("coupons", sa.Column("id", sa.Integer(), primary_key=True))'
    add = 'op.add_column("coupons", sa.Column("code", sa.String(20), nullable=False))'
    spec = make_spec(tmp_path, create, add)
    assert lint_pending(spec, None, "0002") == []
    # Once the table exists in the database, it may hold rows the new column has no value for.
    finding = only(lint_pending(spec, "0001", "0002"))
    assert summary([finding]) == [("add_not_null_column", "coupons", "code", True)]


def test_lint_pending_only_looks_after_start(tmp_path: Path) -> None:
    spec = make_spec(
        tmp_path,
        'op.drop_table("carts")',
        'op.drop_column("orders", "note")',
        'op.rename_table("lines", "order_lines")',
    )
    assert [f.revision for f in lint_pending(spec, None, "head")] == ["0001", "0002", "0003"]
    assert summary(lint_pending(spec, "0001", "head")) == [
        ("drop_column", "orders", "note", True),
        ("rename_table", "lines", None, True),
    ]
    assert [f.revision for f in lint_pending(spec, "0001", "0002")] == ["0002"]
    assert lint_pending(spec, "0003", "0003") == []


def test_lint_scripts_takes_scripts_in_order(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, 'op.drop_table("carts")', 'op.execute("SELECT 1")')
    scripts = migrations.between(spec, None, "0002")
    assert [(f.revision, f.operation, f.destructive) for f in lint_scripts(scripts)] == [
        ("0001", "drop_table", True),
        ("0002", "raw_sql", False),
    ]


def test_sql_run_through_the_bind_is_checked(tmp_path: Path) -> None:
    body = """
        conn = op.get_bind()
        conn.execute(sa.text("UPDATE orders SET coupon_id = 1"))
        with op.batch_alter_table("lines") as batch_op:
            batch_op.get_bind().execute(sa.text("TRUNCATE lines"))
        op.get_context().bind.execute(sa.text("DELETE FROM carts"))
    """
    assert summary(lint(tmp_path, body)) == [
        ("raw_sql", None, None, False),
        ("raw_sql", "lines", None, True),
        ("raw_sql", "carts", None, True),
    ]


def test_revision_failing_without_a_database_is_destructive(tmp_path: Path) -> None:
    body = """
        op.add_column("orders", sa.Column("coupon_id", sa.Integer(), nullable=True))
        count = op.get_bind().execute(sa.text("SELECT count(*) FROM orders")).scalar()
        op.drop_column("orders", "note")
    """
    select, finding = lint(tmp_path, body)
    assert (select.operation, select.destructive) == ("raw_sql", False)
    # The drop_column after the failure is never seen, so the failure itself must block.
    assert (finding.revision, finding.operation, finding.destructive) == ("0001", "raw_sql", True)
    assert "failed when run without a database" in finding.detail
    assert "AttributeError" in finding.detail
