"""Importing data from databases tenantry did not create (a shared database into stores)."""
