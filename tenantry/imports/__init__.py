"""Importing data from databases tenantry did not create: a shared database split into
stores (:mod:`.plan`, :mod:`.source`, …) and legacy billing tables (:mod:`.billing`)."""
