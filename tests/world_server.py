"""A real HTTP server on 127.0.0.1 that counts the requests it gets (for the world guard)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class _Counting(http.server.BaseHTTPRequestHandler):
    hits: list[str]

    def do_GET(self) -> None:
        """Count the request, answer ``hello``."""
        self.hits.append(self.path)
        body = b"hello"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the tests read the count, not a log."""


@contextmanager
def counting_server() -> Iterator[tuple[str, list[str]]]:
    """Serve in a thread while the block runs: a URL on it, and the paths it was asked."""
    hits: list[str] = []
    handler = type("Handler", (_Counting,), {"hits": hits})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/thing", hits
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
