"""``tenantry doctor`` as an operator runs it: exit 0 healthy, 1 with warnings, 2 critical,
a JSON document for scripts, and no traceback when master is gone or unreachable."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from tenantry.jobs.heartbeat import Heartbeat
from tenantry.runtime import Platform
from tenantry.settings import load_settings
from tests.cli.conftest import Invoke, as_json
from tests.conftest import SERVER_URLS, require_server
from tests.helpers import free_port


def _checks(result: object) -> dict[str, dict[str, object]]:
    return {c["name"]: c for c in as_json(result)["checks"]}


def test_healthy_then_a_readable_key_file_warns_then_a_missing_master_is_critical(
    cli: Invoke, tmp_path: Path
) -> None:
    assert cli("init").exit_code == 0
    backed_up = cli("backup", "run", "--db", "master", "--db", "billing", "--verify")
    assert backed_up.exit_code == 0, backed_up.output
    platform = Platform.open(load_settings())
    heartbeat = Heartbeat(platform.writer_sessions)
    heartbeat.start()
    try:
        healthy = cli("doctor", "--json")
        assert healthy.exit_code == 0, healthy.output
        doc = as_json(healthy)
        assert doc["status"] == "ok"
        assert {c["status"] for c in doc["checks"]} == {"ok"}
        names = {c["name"] for c in doc["checks"]}
        for expected in (
            "master connects",
            "billing identity",
            "billing migrations",
            "worker",
            "webhook secrets",
            "backup master",
            "backup billing",
            "key file",
            "disk data dir",
            "stale templates",
            "TLS",
        ):
            assert expected in names
        table = cli("doctor", env={"COLUMNS": "200"})
        assert table.exit_code == 0
        assert "tenantry doctor" in table.stdout
        assert "ok: " in table.stdout

        key = tmp_path / "data" / "secret.key"
        key.chmod(0o644)
        warned = cli("doctor", "--json")
        assert warned.exit_code == 1, warned.output
        assert as_json(warned)["status"] == "warning"
        check = _checks(warned)["key file"]
        assert check["status"] == "warning"
        assert check["fix"] == f"chmod 600 {key}"
        assert "0644" in str(check["evidence"])
        key.chmod(0o600)
    finally:
        heartbeat.stop()
        platform.close()

    for suffix in ("", "-wal", "-shm"):
        (tmp_path / "data" / f"master.db{suffix}").unlink(missing_ok=True)
    gone = cli("doctor", "--json")
    assert gone.exit_code == 2
    assert "Traceback" not in gone.output
    checks = _checks(gone)
    assert checks["master connects"]["status"] == "critical"
    assert "does not exist" in str(checks["master connects"]["evidence"])
    assert checks["billing connects"]["status"] == "ok"
    for needs_master in ("worker", "waiting work", "backups", "tenant migrations"):
        assert checks[needs_master]["status"] == "critical"
        assert "master database is unreachable" in str(checks[needs_master]["evidence"])
    human = cli("doctor", env={"COLUMNS": "200"})
    assert human.exit_code == 2
    assert "Traceback" not in human.output
    assert "critical" in human.stdout


def test_a_postgresql_master_that_does_not_exist_is_critical(cli: Invoke) -> None:
    require_server("postgresql")
    missing = f"tt_missing_{uuid.uuid4().hex[:10]}"
    url = SERVER_URLS["postgresql"].rsplit("/", 1)[0] + f"/{missing}"
    assert cli("init").exit_code == 0  # billing stays embedded; only master is missing
    result = cli("doctor", "--json", env={"DATABASE_URL": url})
    assert result.exit_code == 2
    checks = _checks(result)
    assert checks["master connects"]["status"] == "critical"
    assert missing in str(checks["master connects"]["evidence"])
    assert "does not exist" in str(checks["master connects"]["evidence"])
    assert checks["billing identity"]["status"] == "ok"


def test_an_unreachable_server_fails_fast_without_a_traceback(cli: Invoke) -> None:
    assert cli("init").exit_code == 0
    url = f"postgresql://postgres:hunter2secret@127.0.0.1:{free_port()}/nowhere"
    started = time.monotonic()
    result = cli("doctor", "--json", env={"DATABASE_URL_BILLING": url})
    assert time.monotonic() - started < 15
    assert result.exit_code == 2
    assert "hunter2secret" not in result.output
    checks = _checks(result)
    assert checks["billing connects"]["status"] == "critical"
    assert checks["webhook failures"]["status"] == "critical"
    assert "billing database is unreachable" in str(checks["webhook failures"]["evidence"])
    assert checks["master identity"]["status"] == "ok"


def test_settings_that_do_not_parse_are_critical(cli: Invoke) -> None:
    result = cli("doctor", "--json", env={"DATABASE_URL": "postgres//nohost"})
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    checks = _checks(result)
    assert checks["settings"]["status"] == "critical"
    assert "DATABASE_URL" in str(checks["settings"]["evidence"])


def test_the_job_queue_is_asked_and_one_that_does_not_answer_is_critical(cli: Invoke) -> None:
    assert cli("init").exit_code == 0
    embedded = _checks(cli("doctor", "--json"))
    assert embedded["job queue"]["status"] == "ok"
    assert "0 message(s) waiting" in str(embedded["job queue"]["evidence"])

    closed = f"redis://:queuepass@127.0.0.1:{free_port()}/0"
    result = cli("doctor", "--json", env={"TENANTRY_QUEUE_URL": closed})
    assert result.exit_code == 2
    assert "queuepass" not in result.output
    queue = _checks(result)["job queue"]
    assert queue["status"] == "critical"
    assert "does not answer" in str(queue["evidence"])
    assert "TENANTRY_QUEUE_URL" in str(queue["fix"])
