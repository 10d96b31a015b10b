"""Domain errors. Adapters (CLI, HTTP) map them to exit codes and status codes in one place."""

from __future__ import annotations


class TenantryError(Exception):
    """Base of every error tenantry raises on purpose.

    ``message`` says what is wrong, ``hint`` what to do about it. Neither may contain a secret.
    """

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} {self.hint}" if self.hint else self.message


class ConfigurationError(TenantryError):
    """A setting is missing or malformed."""


class DatabaseUnreachable(TenantryError):
    """A database could not be connected to."""


class QueueUnreachable(DatabaseUnreachable):
    """The job queue (Redis, or the embedded SQLite queue) could not be reached."""


class DatabaseAdminError(TenantryError):
    """A server refused to create or drop a database."""


class OperationFailed(TenantryError):
    """Durable work run on the caller's behalf ended failed or cancelled (its record says
    why)."""


class NoWorker(TenantryError):
    """Queued work waits for a job worker, and none is running."""


class WrongDatabase(TenantryError):
    """The database's identity does not match what the command expects."""


class UnidentifiedDatabase(TenantryError):
    """A non-empty database carries no tenantry identity and was not adopted."""


class NotOwner(TenantryError):
    """A consumer app tried to change a schema it does not own."""


class SchemaMismatch(TenantryError):
    """A database's tables differ from the models of its role."""


class MigrationError(TenantryError):
    """A migration could not be planned or applied."""


class DestructiveChange(MigrationError):
    """A pending revision drops or narrows something; refused without --allow-destructive."""


class NotFound(TenantryError):
    """The thing asked for does not exist (or is not visible to the caller)."""


class Conflict(TenantryError):
    """The request conflicts with the current state (a duplicate, a job already running).

    ``retry_after`` (seconds) is set when the conflict passes by itself (a request with the
    same Idempotency-Key still running): the client may send the same request again then.
    """

    def __init__(
        self, message: str, hint: str | None = None, *, retry_after: int | None = None
    ) -> None:
        super().__init__(message, hint)
        self.retry_after = retry_after


class InvalidInput(TenantryError):
    """A value given by the user is malformed."""


class MalformedPayload(TenantryError):
    """A body that cannot be read in its sender's format (a webhook event its processor's
    adapter cannot parse). Sending the same body again never helps."""


class StoreUnavailable(TenantryError):
    """A store's database cannot serve requests now (suspended, provisioning, moving)."""


class StoreSuspended(StoreUnavailable):
    """The store was suspended: its traffic is refused until it is resumed."""


class LimitExceeded(TenantryError):
    """The store's plan does not allow this (too many products, orders or API calls)."""


class QuotaExceeded(LimitExceeded):
    """The store used up its API calls for the month; ``retry_after`` says in how many
    seconds the quota resets."""

    def __init__(self, message: str, hint: str | None = None, *, retry_after: int) -> None:
        super().__init__(message, hint)
        self.retry_after = retry_after


class Unauthorized(TenantryError):
    """Missing or unknown credentials."""


class Forbidden(TenantryError):
    """Known credentials without the right scope."""


class TooManyAttempts(TenantryError):
    """Too many failed logins from one address (for one email): refused for ``retry_after``
    seconds, whatever the password."""

    def __init__(self, message: str, hint: str | None = None, *, retry_after: int) -> None:
        super().__init__(message, hint)
        self.retry_after = retry_after


class WritesBlocked(TenantryError):
    """Writes to a store are refused for now (its database is being moved or restored);
    reads still work. ``retry_after`` says in how many seconds to try again."""

    def __init__(self, message: str, hint: str | None = None, *, retry_after: int) -> None:
        super().__init__(message, hint)
        self.retry_after = retry_after


class ConnectionsExhausted(DatabaseUnreachable):
    """A database server's connection budget in this process stayed full for too long."""
