"""A local web server that serves domain verification tokens, and the host mapping that
sends the verifier there instead of to DNS."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tenantry.operations.domain_verify import HostAddress
from tenantry.services.domains import WELL_KNOWN_PATH


@contextmanager
def token_server(published: dict[str, str]) -> Iterator[HostAddress]:
    """Serve ``published`` (host -> token) at ``/.well-known/tenantry/<token>`` on
    127.0.0.1; yields the address hook mapping every host to it."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            host = (self.headers.get("Host") or "").lower()
            token = published.get(host)
            if token is None or self.path != WELL_KNOWN_PATH + token:
                self.send_error(404)
                return
            body = token.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    try:
        yield lambda host: ("127.0.0.1", port)
    finally:
        server.shutdown()
        server.server_close()
