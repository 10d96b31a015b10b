"""The tests' name for the bench's master seeding (``bench/master_seed.py``, its one home):
thousands of stores written straight into master, no tenant databases."""

from bench.master_seed import BATCH, seed_stores, slug_of

__all__ = ["BATCH", "seed_stores", "slug_of"]
