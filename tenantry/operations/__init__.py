"""Operations: the durable, multi-database work of tenantry, one module per operation.

An operation owns its transactions, records its progress where every adapter (CLI, API, jobs)
can follow it, and can be resumed or cancelled. Services below it take sessions and never commit;
adapters above it (``tenantry.api``, ``tenantry.cli``, ``tenantry.jobs``) call it and never each
other.
"""
