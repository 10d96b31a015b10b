"""Where ``stores move`` sends a store, from the choices its adapters take (CLI flags, the HTTP
body, the console form): another server (``--to-server``/``--server``: a database of its own
there, or ``sqlite``), its own schema of a shared PostgreSQL database (``--to-shared
SERVER[/DB]``), or out of one into a database of its own (``--to-own-database``, on
``--server`` or where placement picks)."""

from __future__ import annotations

from dataclasses import dataclass

from tenantry.errors import InvalidInput
from tenantry.operations.provision_shared import parse_target


@dataclass(frozen=True)
class MoveDestination:
    """``server``: a registered server, ``sqlite``, or ``None`` (placement picks);
    ``shared_database``: into the store's schema of that database on ``server``;
    ``own_database``: asked for a database of its own (only a shared-schema store may)."""

    server: str | None
    shared_database: str | None = None
    own_database: bool = False

    @classmethod
    def parse(
        cls, to_server: str | None, to_shared: str | None, to_own_database: bool
    ) -> MoveDestination:
        """The destination the three choices name; a contradiction, or none at all, is
        refused naming the flags."""
        to_server = to_server.strip() if to_server and to_server.strip() else None
        to_shared = to_shared.strip() if to_shared is not None else None
        if to_shared is not None:
            if to_own_database or to_server is not None:
                raise InvalidInput(
                    "--to-shared cannot go with --to-own-database or --to-server/--server.",
                    "Give --to-shared SERVER[/DB] alone, or --to-own-database [--server NAME].",
                )
            server, database = parse_target(to_shared)
            return cls(server, database)
        if to_server is None and not to_own_database:
            raise InvalidInput(
                "say where the store goes.",
                "Give --to-server NAME, --to-shared SERVER[/DB] or --to-own-database "
                "[--server NAME|sqlite].",
            )
        return cls(to_server, None, to_own_database)

    def describe(self) -> str:
        """Where, as a person reads it."""
        if self.shared_database is not None:
            return f"shared database {self.server}/{self.shared_database}"
        if self.server is not None:
            return f"server {self.server!r}"
        return "a database of its own where placement picks"
