"""A consumer app's start-up check (seed 003): the database of a role it uses but does not
own is at the revision the app was written for, and its tables match tenantry's models.

    Tenantry.check_schema("billing", expects="0005", as_app="client-portal")

It reads the database's identity and version table and never writes. Run it before
``Tenantry.from_env()``: that refuses a master or billing database behind tenantry's own
head with a hint meant for the owner (migrate), not for a consumer.
"""

from __future__ import annotations

from dataclasses import dataclass

from tenantry.db import migrations
from tenantry.db.configured import connection, target
from tenantry.db.identity import guard
from tenantry.db.schemas import Role, SchemaSpec
from tenantry.errors import ConfigurationError, MigrationError, SchemaMismatch
from tenantry.settings import Settings, load_settings


@dataclass(frozen=True)
class SchemaState:
    """What the checked database is: its role, revision, owner app and instance."""

    role: str
    revision: str
    owner_app: str
    instance_id: str
    url: str  # password masked


def check_schema(
    role: Role | str, *, expects: str, as_app: str, settings: Settings | None = None
) -> SchemaState:
    """Check that ``role``'s configured database (``DATABASE_URL_BILLING`` for billing) is at
    revision ``expects`` and matches the models. Raises
    :class:`~tenantry.errors.SchemaMismatch` naming the revision found and the one expected,
    and who must act (the owner app migrates, a consumer never does);
    :class:`~tenantry.errors.WrongDatabase` when the URL leads to another role's database."""
    try:
        wanted = Role(role)
    except ValueError:
        raise ConfigurationError(
            f"{role!r} is not a database role; the roles are master, billing and tenant."
        ) from None
    if wanted is Role.TENANT:
        raise ConfigurationError(
            "a consumer checks master or billing; tenant databases are checked per store "
            "(tenantry fleet status)."
        )
    current_settings = settings or load_settings()
    t = target(current_settings, wanted)
    if not migrations.known(t.spec, expects):
        raise ConfigurationError(
            f"{as_app!r} expects {wanted} revision {expects!r}, which this tenantry does not "
            f"know (its newest is {migrations.head(t.spec)}).",
            f"Install the tenantry version {as_app} was written for.",
        )
    with connection(t) as conn:
        identity = guard(conn, t.spec, where=t.shown)
        if identity is None:
            raise SchemaMismatch(
                f"the {wanted} database {t.shown} is empty; {as_app!r} expects revision {expects}.",
                f"Its owner creates it: tenantry init (as {current_settings.owner_of(wanted)}).",
            )
        found = migrations.current(conn, t.spec)
        if found != expects:
            raise _mismatch(t.spec, wanted, t.shown, found, expects, as_app, identity.owner_app)
        drift = migrations.drift(conn, t.spec) if found == migrations.head(t.spec) else []
    if drift:
        shown = "; ".join(str(d) for d in drift[:5])
        raise SchemaMismatch(
            f"the {wanted} database {t.shown} is at {found} but its tables differ from the "
            f"models in {len(drift)} place(s): {shown}.",
            f"Someone changed it by hand: its owner {identity.owner_app!r} must repair it.",
        )
    return SchemaState(wanted.value, found, identity.owner_app, identity.instance_id, t.shown)


def _mismatch(
    spec: SchemaSpec,
    role: Role,
    shown: str,
    found: str | None,
    expects: str,
    as_app: str,
    owner: str,
) -> SchemaMismatch:
    message = (
        f"the {role} database {shown} is at revision {found or 'base'}; {as_app!r} was "
        f"written for {expects}."
    )
    if behind(spec, found, expects):
        hint = (
            f"{as_app!r} is a consumer and never migrates: the owner app {owner!r} migrates "
            f"it (tenantry db migrate --role {role} --as-app {owner}), then start {as_app} again."
        )
    else:
        hint = f"The database is newer: deploy the version of {as_app} written for {found}."
    return SchemaMismatch(message, hint)


def behind(spec: SchemaSpec, found: str | None, expects: str) -> bool:
    """Whether a database at ``found`` is older than revision ``expects`` (one this code
    knows): an upgrade would lead from one to the other."""
    try:
        return bool(migrations.between(spec, found, expects))
    except MigrationError:  # ``found`` is newer than ``expects``, or unknown to this code
        return False
