"""A plug-in whose ``RESOURCES`` are not declarations (for test_declaration)."""

RESOURCES = ["customers"]
