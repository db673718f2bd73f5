"""Helpers for tests that run the real ``callrec`` executable: the CLI and ``callrec serve``."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import httpx

START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


def callrec_executable() -> str:
    """The ``callrec`` console script of the interpreter running the tests."""
    found = shutil.which("callrec", path=os.path.dirname(sys.executable))
    assert found, "the callrec console script is not installed next to the interpreter"
    return found


def callrec_env(data_dir: Path, env: Mapping[str, str] | None = None) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CALLREC_")}
    return {**base, "CALLREC_DATA_DIR": str(data_dir), **(env or {})}


def run_cli(
    data_dir: Path,
    *args: str,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> subprocess.CompletedProcess[str]:
    """Run ``callrec ARGS`` to completion on ``data_dir``; output captured as text."""
    return subprocess.run(
        [callrec_executable(), *args],
        input=input,
        capture_output=True,
        text=True,
        env=callrec_env(data_dir, env),
        timeout=timeout,
        check=False,
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RunningServer(NamedTuple):
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        """Everything the server wrote to stdout and stderr so far."""
        return self.log.read_text(errors="replace")


def stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate, wait a bounded time, then kill; always reaps the process."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
    process.wait(timeout=STOP_TIMEOUT)


def _wait_until_healthy(server: RunningServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0) as client:
        while True:
            if server.process.poll() is not None:
                raise AssertionError(
                    f"callrec serve exited with {server.process.returncode}:\n{server.output()}"
                )
            try:
                if client.get(f"{server.url}/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"callrec serve not healthy after {timeout} s:\n{server.output()}"
                )
            time.sleep(0.05)


@contextmanager
def running_server(
    data_dir: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout: float = START_TIMEOUT,
) -> Iterator[RunningServer]:
    """Run ``callrec serve`` on a free loopback port until the block ends.

    Yields the base URL, the process and its log file once ``/healthz`` answers 200; fails
    with the server's output when it does not within ``timeout`` seconds. The process is
    stopped (terminate, bounded wait, kill) however the block ends.
    """
    port = free_port()
    log = data_dir.parent / f"{data_dir.name}-serve-{port}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [callrec_executable(), "serve", "--host", "127.0.0.1", "--port", str(port), *args],
            env=callrec_env(data_dir, env),
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    server = RunningServer(f"http://127.0.0.1:{port}", process, log)
    try:
        _wait_until_healthy(server, timeout)
        yield server
    finally:
        stop(process)
