"""Every command that takes an id takes its start too, as `backup` commands always did."""

from __future__ import annotations

from tests.cli.conftest import Invoke, as_json
from tests.cli.test_billing_cli import _add_secret, _ingest, _payment_succeeded


def test_jobs_show_and_cancel_take_an_id_prefix(cli: Invoke) -> None:
    assert cli("init").exit_code == 0
    assert cli("stores", "create", "prefixed", "--name", "P").exit_code == 0
    job = as_json(cli("provision", "prefixed", "--new", "--json"))
    shown = cli("jobs", "show", job["id"][:8], "--json")
    assert shown.exit_code == 0, shown.output
    assert as_json(shown)["id"] == job["id"]
    assert as_json(cli("jobs", "show", job["id"][:8].upper(), "--json"))["id"] == job["id"]
    cancelled = cli("jobs", "cancel", job["id"][:13], "--json")
    assert cancelled.exit_code == 0, cancelled.output
    assert as_json(cancelled)["status"] == "cancelled"
    missing = cli("jobs", "show", "ffffffff", "--json")
    assert missing.exit_code == 1
    assert as_json(missing)["error"]["type"] == "NotFound"
    junk = cli("jobs", "show", "%", "--json")
    assert junk.exit_code == 1
    assert as_json(junk)["error"]["type"] == "NotFound"


def test_jobs_show_refuses_an_ambiguous_prefix_listing_the_candidates(cli: Invoke) -> None:
    assert cli("init").exit_code == 0
    ids = []
    for n in range(20):  # 20 ids share a first hex digit with another one for sure
        assert cli("stores", "create", f"amb-{n}", "--name", "A").exit_code == 0
        ids.append(as_json(cli("provision", f"amb-{n}", "--new", "--json"))["id"])
    digit = next(d for d in "0123456789abcdef" if sum(i.startswith(d) for i in ids) > 1)
    result = cli("jobs", "show", digit, "--json")
    assert result.exit_code == 2, result.output
    error = as_json(result)["error"]
    assert error["type"] == "InvalidInput"
    assert next(i for i in ids if i.startswith(digit)) in error["message"]
    assert "more of the id" in error["hint"]


def test_webhooks_show_takes_an_id_prefix(cli: Invoke) -> None:
    assert cli("init").exit_code == 0
    _add_secret(cli)
    stored = _ingest(_payment_succeeded("evt_prefix_1", "pi_prefix_1"))
    for ref in (str(stored.id)[:8], str(stored.id), "evt_prefix_1"):
        shown = cli("billing", "webhooks", "show", ref, "--json")
        assert shown.exit_code == 0, shown.output
        assert as_json(shown)["id"] == str(stored.id)
    replayed = cli("billing", "webhooks", "replay", str(stored.id)[:8], "--json")
    assert replayed.exit_code == 0, replayed.output
    other_app = cli("billing", "webhooks", "show", str(stored.id)[:8], "--app", "globex", "--json")
    assert other_app.exit_code == 1
    assert as_json(other_app)["error"]["type"] == "NotFound"
