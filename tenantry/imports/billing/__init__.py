"""Import legacy billing tables (customers, subscriptions, invoices, payments, webhooks) into
the billing database under one app.

:mod:`.mapping` reads the mapping file, :mod:`.targets` knows the billing tables it may feed,
:mod:`.convert` turns one legacy row into one billing row (or problems), :mod:`.plan` checks a
whole source (the dry-run), :mod:`.verify` compares source and billing after an import. The
durable import itself is :mod:`tenantry.operations.import_billing`.
"""
