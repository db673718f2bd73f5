"""Real storage servers the tests start themselves, on free loopback ports.

- ``webdav_server``: wsgidav (the WebDAV server from PyPI) on cheroot, Basic auth only.
- ``s3_server``: moto's server mode, an S3 *emulator*, with signature checking switched on
  (IAM user, access key, policy), or a real S3-compatible store (MinIO, Ceph RGW, AWS) when
  ``CALLREC_TEST_S3_URL`` names one (with ``CALLREC_TEST_S3_ACCESS_KEY``,
  ``CALLREC_TEST_S3_SECRET_KEY``, ``CALLREC_TEST_S3_BUCKET`` and optionally
  ``CALLREC_TEST_S3_REGION``); every test then works under its own key prefix.
- ``TcpProxy``: a byte-counting TCP relay put in front of a server, to see what callrec
  really fetches, and to make a storage slow, stalled or cut off.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import httpx
from botocore.config import Config

USER, PASSWORD = "callrec", "dav-secret-pw"
S3_ENV = "CALLREC_TEST_S3_URL"
METHODS = {b"GET", b"HEAD", b"PUT", b"POST", b"DELETE", b"MKCOL", b"PROPFIND"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --------------------------------------------------------------------------- WebDAV


@dataclass
class WebDAV:
    url: str  # the base URL of the share, ending in /
    root: Path  # the directory it serves
    port: int


@contextlib.contextmanager
def webdav_server(root: Path, share: str = "/recordings") -> Iterator[WebDAV]:
    from cheroot import wsgi
    from wsgidav.wsgidav_app import WsgiDAVApp

    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    app = WsgiDAVApp(
        {
            "host": "127.0.0.1",
            "port": port,
            "provider_mapping": {share: str(root)},
            "simple_dc": {"user_mapping": {"*": {USER: {"password": PASSWORD}}}},
            "http_authenticator": {
                "domain_controller": None,
                "accept_basic": True,
                "accept_digest": False,
                "default_to_digest": False,
            },
            "verbose": 0,
            "logging": {"enable": False},
            "dir_browser": {"enable": False},
            "lock_storage": True,
            "property_manager": True,
        }
    )
    server = wsgi.Server(("127.0.0.1", port), app, numthreads=20)
    server.prepare()
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        yield WebDAV(f"http://127.0.0.1:{port}{share}/", root, port)
    finally:
        server.stop()
        thread.join(timeout=10)


# --------------------------------------------------------------------------- S3


@dataclass
class S3:
    endpoint: str
    region: str
    bucket: str
    access_key: str
    secret_key: str
    prefix: str  # every key a test writes starts with it
    emulated: bool
    client: Any = field(repr=False)  # boto3, to check callrec's work independently

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data)

    def get(self, key: str) -> bytes:
        body: bytes = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return body

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
        except self.client.exceptions.ClientError:
            return False
        return True

    def clean(self) -> None:
        listed = self.client.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix)
        for item in listed.get("Contents", []):
            self.client.delete_object(Bucket=self.bucket, Key=item["Key"])


def _boto(endpoint: str, region: str, key: str, secret: str, service: str = "s3") -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


@contextlib.contextmanager
def s3_server() -> Iterator[S3]:
    """A bucket to work in: on MinIO/Ceph/AWS when ``CALLREC_TEST_S3_URL`` is set, else on
    moto's server mode (an emulator)."""
    prefix = f"t-{uuid.uuid4().hex[:12]}"
    if os.environ.get(S3_ENV):
        endpoint = os.environ[S3_ENV].rstrip("/")
        region = os.environ.get("CALLREC_TEST_S3_REGION", "us-east-1")
        key, secret = (
            os.environ["CALLREC_TEST_S3_ACCESS_KEY"],
            os.environ["CALLREC_TEST_S3_SECRET_KEY"],
        )
        bucket = os.environ["CALLREC_TEST_S3_BUCKET"]
        client = _boto(endpoint, region, key, secret)
        s3 = S3(endpoint, region, bucket, key, secret, prefix, False, client)
        try:
            yield s3
        finally:
            s3.clean()
        return
    with _moto() as (endpoint, key, secret):
        client = _boto(endpoint, "us-east-1", key, secret)
        yield S3(endpoint, "us-east-1", "callrec-test", key, secret, prefix, True, client)


@contextlib.contextmanager
def _moto() -> Iterator[tuple[str, str, str]]:
    """moto's server, with an IAM user allowed s3:* and signature checks switched on."""
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    class QuietHandler(MotoRequestHandler):
        def log_request(self, *args: Any, **kwargs: Any) -> None:
            pass

    server = make_server(
        "127.0.0.1",
        0,
        DomainDispatcherApplication(create_backend_app),
        threaded=True,
        request_handler=QuietHandler,
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    endpoint = f"http://127.0.0.1:{server.server_port}"
    try:
        iam = _boto(endpoint, "us-east-1", "setup", "setup", "iam")
        iam.create_user(UserName="callrec")
        iam.put_user_policy(
            UserName="callrec",
            PolicyName="s3",
            PolicyDocument='{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", '
            '"Action": "s3:*", "Resource": "*"}]}',
        )
        created = iam.create_access_key(UserName="callrec")["AccessKey"]
        key, secret = created["AccessKeyId"], created["SecretAccessKey"]
        _boto(endpoint, "us-east-1", key, secret).create_bucket(Bucket="callrec-test")
        httpx.post(f"{endpoint}/moto-api/reset-auth", content=b"0").raise_for_status()
        yield endpoint, key, secret
    finally:
        httpx.post(f"{endpoint}/moto-api/reset-auth", content=b"inf")
        httpx.post(f"{endpoint}/moto-api/reset")
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


# --------------------------------------------------------------------------- TCP proxy


class TcpProxy:
    """Relays connections to ``target``; counts the bytes coming back from it.

    ``stall`` makes it accept connections and never answer (a hung storage); ``stall_after``
    stops relaying answers after that many bytes, holding the connection open (a storage
    hanging mid-stream); ``cut_after`` closes every connection after that many bytes (a
    storage dying mid-stream).
    """

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.stall = False
        self.cut_after: int | None = None
        self.stall_after: int | None = None
        self.cut_up_after: int | None = None  # bytes of a connection's requests, then cut
        self.bytes_back = 0
        self.open_upstream = 0
        self.requests: list[bytes] = []  # the first bytes of each request sent upstream
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def url(self, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self._track(client)
            if self.stall:
                continue  # accepted, never answered
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            self._track(upstream)
            with self._lock:
                self.open_upstream += 1
            threading.Thread(target=self._pump_up, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump_down, args=(upstream, client), daemon=True).start()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)

    def _pump_up(self, client: socket.socket, upstream: socket.socket) -> None:
        sent = 0
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                if data.split(b" ", 1)[0] in METHODS:  # the start of a request
                    with self._lock:
                        self.requests.append(data[:400])
                sent += len(data)
                if self.cut_up_after is not None and sent > self.cut_up_after:
                    upstream.sendall(data[: len(data) - (sent - self.cut_up_after)])
                    for sock in (upstream, client):  # the connection dies mid-request
                        sock.shutdown(socket.SHUT_RDWR)
                    break
                upstream.sendall(data)
        with contextlib.suppress(OSError):
            upstream.shutdown(socket.SHUT_WR)
            upstream.close()

    def _pump_down(self, upstream: socket.socket, client: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := upstream.recv(65536):
                with self._lock:
                    self.bytes_back += len(data)
                    cut = self.cut_after is not None and self.bytes_back >= self.cut_after
                    hang = self.stall_after is not None and self.bytes_back >= self.stall_after
                client.sendall(data)
                if hang:
                    self._closed.wait()
                if cut or hang:
                    break
        with self._lock:
            self.open_upstream -= 1
        for sock in (upstream, client):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept
        self._listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self._thread.join(timeout=5)


@contextlib.contextmanager
def proxy(target_port: int) -> Iterator[TcpProxy]:
    relay = TcpProxy(target_port)
    try:
        yield relay
    finally:
        relay.close()


@contextlib.contextmanager
def range_ignoring_server(size: int) -> Iterator[int]:
    """An HTTP server that answers every GET with the whole file (200), ignoring ``Range``,
    as a misconfigured storage or proxy might. Yields its port."""
    from cheroot import wsgi

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Length", str(size)), ("ETag", '"whole"')])
        if environ["REQUEST_METHOD"] == "HEAD":
            return iter([])
        return (b"\0" * 65536 for _ in range(size // 65536))

    port = free_port()
    server = wsgi.Server(("127.0.0.1", port), app, numthreads=4)
    server.shutdown_timeout = 1  # a worker may still be writing to a client that left
    server.prepare()
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        server.stop()
        thread.join(timeout=10)


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Bounded polling: True as soon as ``condition()`` holds, False after ``timeout``."""
    deadline = threading.Event()
    timer = threading.Timer(timeout, deadline.set)
    timer.start()
    try:
        while not deadline.is_set():
            if condition():
                return True
            deadline.wait(0.02)
        return condition()
    finally:
        timer.cancel()


def closed_port() -> int:
    """A loopback port nothing listens on (a storage that is down)."""
    return free_port()
