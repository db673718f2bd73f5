"""The HTTP server ``callrec serve`` runs: Granian, inside this very process.

Granian parses HTTP and moves bytes in Rust threads and calls the ASGI application on this
process's event loop (its "embedded" mode), so per request far less Python runs than on a
pure-Python server: ``bench/media.py`` measured seeks (64 KiB ranges) at 1.1-1.3 times
uvicorn's requests/s with the same application. Its own file sending (the ASGI
``http.response.pathsend`` extension) is not used: it opens the file by its path after the
headers went out, and a file replaced meanwhile was sent under the old one's headers.

It runs in this process, not in a worker process of its own, because the service is one
process: a ``kill -9`` of ``callrec serve`` stops everything, and a new server on the same
data starts at once (no orphaned worker keeps the port or the database).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from typing import Any

from granian.constants import HTTPModes, Interfaces
from granian.log import LogLevels
from granian.server.embed import Server


class PortInUse(OSError):
    """The address cannot be bound (another server listens there, or no permission)."""


def check_bindable(host: str, port: int) -> None:
    """Fail if ``host:port`` cannot be bound. Granian's listener shares its port with any
    other listener of the same user (``SO_REUSEPORT``, for its worker processes), so a
    second ``callrec serve`` on a busy port would otherwise start and take half the
    requests; a plain bind tells, as other servers do."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as error:
        raise PortInUse(f"cannot listen on {host}:{port}: {error.strerror or error}") from None


class _NotNews(logging.Filter):
    """Granian says on every start that its embedded mode is experimental: known, and
    documented (docs/decisions.md), so not repeated to the operator each time."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Embedded server is experimental")


_NOT_NEWS = _NotNews()  # one instance: adding it again (another server) changes nothing


def build(app: Any, host: str, port: int, log_level: str) -> Server:
    """The server for ``app`` on ``host:port``; ``await server.serve()`` runs it until
    ``server.stop()``."""
    check_bindable(host, port)
    server = Server(
        app,
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        http=HTTPModes.http1,
        websockets=False,
        log_level=LogLevels(log_level),
        # The access log: a line per request; below "info" not even formatted.
        log_access=log_level in ("info", "debug"),
    )
    logging.getLogger("_granian").addFilter(_NOT_NEWS)
    return server


def run(app: Any, host: str, port: int, log_level: str) -> None:
    """Serve ``app`` until SIGINT or SIGTERM, then shut down gracefully (lifespan included)."""
    import gc

    import uvloop

    server = build(app, host, port, log_level)
    # What start-up made (modules, the application, settings) lives as long as the process:
    # out of the collector's sight, every full collection scans only what requests made.
    gc.freeze()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, server.stop)
        await server.serve()

    uvloop.run(main())
