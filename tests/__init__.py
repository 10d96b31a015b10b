"""tenantry's test suite.

Imported before any conftest or test module (pytest imports a test file's package first), so
what is set here holds for the whole run: this process, the xdist workers it starts and every
``python -m tenantry`` the tests start.
"""

import os
import sys

# The suite's processes keep bytecode caches (``__pycache__/``, gitignored), whatever the
# environment says: with PYTHONDONTWRITEBYTECODE set (as on this project's CI image) every
# xdist worker compiled and assertion-rewrote every test module again (collection alone took
# 20.6 s of CPU per worker instead of 6.9 s), and every subprocess the tests start compiled
# tenantry's 300 modules again (0.4 s of CPU each).
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
sys.dont_write_bytecode = False
