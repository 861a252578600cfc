"""`visualize-embeddings --host/--port`: the same map page, served locally until Ctrl-C (or SIGTERM)."""

from __future__ import annotations

import signal
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from chatspace.errors import UsageError


def _handler(page: bytes):
    class MapHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path.split("?", 1)[0] not in ("/", "/index.html", "/map.html"):
                self.send_error(404, "the map is at /")
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(page)

        def do_HEAD(self) -> None:  # noqa: N802
            self.send_response(
                200 if self.path.split("?", 1)[0] in ("/", "/index.html", "/map.html") else 404
            )
            self.end_headers()

        def log_message(self, format, *args) -> None:  # noqa: A002 - quiet: the page is one request
            pass

    return MapHandler


def serve(page: str, host: str = "127.0.0.1", port: int = 8050) -> None:
    """Serve `page` at http://host:port/ until interrupted; port 0 picks a free port (printed)."""
    server_class = ThreadingHTTPServer
    if ":" in host:  # an IPv6 address such as ::1

        class server_class(ThreadingHTTPServer):  # noqa: N801
            address_family = socket.AF_INET6

    try:
        server = server_class((host, port), _handler(page.encode("utf-8")))
    except OSError as e:
        raise UsageError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    server.daemon_threads = True

    def stop(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    bound_host, bound_port = server.server_address[:2]
    shown = f"[{bound_host}]" if ":" in str(bound_host) else bound_host
    print(f"serving the map at http://{shown}:{bound_port}/ (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr, flush=True)
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.server_close()
