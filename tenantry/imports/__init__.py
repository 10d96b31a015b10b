"""Imports of data tenantry did not create: legacy billing tables (:mod:`.billing`)."""
