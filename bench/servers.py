"""Starting and stopping the servers a benchmark measures (callrec, baselines, nginx)."""

from __future__ import annotations

import http.client
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(port: int, proc: subprocess.Popen[bytes], path: str = "/") -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args[0]} exited early with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            conn.getresponse().read()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{proc.args[0]} did not start within 60 s")


def same_server(app_dir: Path, target: str, port: int) -> list[str]:
    """The command serving ``module:attribute`` from ``app_dir`` on the HTTP server
    ``callrec serve`` runs (same server, same settings), so that a baseline app is compared
    with callrec's application rather than with another server."""
    module, attribute = target.split(":")
    code = (
        f"import sys; sys.path.insert(0, {str(app_dir)!r}); "
        f"from {module} import {attribute} as app; from callrec.server import run; "
        f"run(app, '127.0.0.1', {port}, 'warning')"
    )
    return [sys.executable, "-c", code]


@contextmanager
def serving(cmd: list[str], port: int, env: dict[str, str], ready: str) -> Iterator[int]:
    """Run a server until the block ends; yields its pid."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(port, proc, ready)
        yield proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def callrec(env: dict[str, str], *args: str, stdin: str | None = None) -> None:
    """Run the installed ``callrec`` command; fail the benchmark if it fails."""
    subprocess.run(
        [str(BIN / "callrec"), *args],
        env=env,
        input=stdin.encode() if stdin is not None else None,
        check=True,
        stderr=subprocess.DEVNULL,
    )


def add_admin(env: dict[str, str], name: str, ccid: str, password: str) -> None:
    callrec(
        env,
        *("users", "add", name, "--role", "admin", "--contact-center", ccid),
        "--password-stdin",
        stdin=password,
    )
