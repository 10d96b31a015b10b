"""Operations: the durable, multi-database work of tenantry, one module per operation.

An operation owns its transactions, records its progress where every adapter (CLI, API, jobs)
can follow it, and can be resumed or cancelled. Services below it take sessions and never commit;
adapters above it (``tenantry.api``, ``tenantry.cli``, ``tenantry.jobs``) call it and never each
other.

Every operation is a row of master's ``operations`` table (kind, target, status, step, progress,
lease, cancel request, error, parent run), driven through one kit (:mod:`.kit`: create, claim,
renew, progress, finish, fail, request_cancel, cancel_requested, find_stalled) whatever its kind;
:mod:`.locks` holds "one at a time per key" (a fleet run per role, the backup scheduler). A new
operation records itself with the kit, claims before it works, reports progress and checks for a
cancel request at each step boundary, and ends with finish, fail or mark_cancelled.

One kind of work is not a row of ``operations``: billing webhook events
(:mod:`.process_webhooks`), whose rows in the shared billing database are their own queue and
lease (see that module for why).
"""
