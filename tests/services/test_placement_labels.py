"""The values people give placement: sizes with units, store counts and labels, `none` to
clear, and errors that name the option."""

from __future__ import annotations

import pytest

from tenantry.errors import InvalidInput
from tenantry.services.placement_labels import label, size_bytes, tenant_count


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("500", 500),
        ("1KB", 1024),
        ("50GB", 50 * 1024**3),
        ("50 gib", 50 * 1024**3),
        ("1.5T", int(1.5 * 1024**4)),
        ("200MiB", 200 * 1024**2),
        ("none", None),
        (None, None),
        (2048, 2048),
    ],
)
def test_sizes_read_with_binary_units(given: str | int | None, expected: int | None) -> None:
    assert size_bytes(given, field="--max-bytes") == expected


@pytest.mark.parametrize("given", ["lots", "0", "-5GB", "10 XB", "", "5PB"])
def test_a_size_that_is_not_one_names_the_option(given: str) -> None:
    with pytest.raises(InvalidInput, match="--max-bytes"):
        size_bytes(given, field="--max-bytes")


def test_store_counts_and_labels() -> None:
    assert tenant_count("0", field="--max-tenants") == 0  # a server that takes no store
    assert tenant_count("none", field="--max-tenants") is None
    for bad in ("-1", "ten", "1.5", str(2**31)):
        with pytest.raises(InvalidInput, match="--max-tenants"):
            tenant_count(bad, field="--max-tenants")
    assert label("eu-west-1", field="--region") == "eu-west-1"
    assert label("none", field="--region") is None
    for bad in ("EU", "eu_west", "-eu", "e" * 65, ""):
        with pytest.raises(InvalidInput, match="--region"):
            label(bad, field="--region")
