"""The web console: server-rendered pages over the same services the API uses.

Mounted by :func:`tenantry.console.app.install` beside the API (``GET /`` and ``/console/…``);
templates and static assets (htmx, vendored) ship inside the package.
"""
