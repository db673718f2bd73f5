"""Media streaming benchmark: callrec playing from its local store, beside nginx (sendfile)
serving the very same file, in one run.

    .venv/bin/python bench/media.py                       # the figures in docs/performance.md
    .venv/bin/python bench/media.py --duration 3 --rounds 1 --streams 50   # quicker
    .venv/bin/python bench/media.py --baseline /tmp/old   # also a worktree of another commit

What it measures (results and how to read them: docs/performance.md, "Media streaming"):
1. Full-file downloads of a 5 MB file, requests/s (wrk, keep-alive, 8 connections).
2. 64 KiB range requests at offsets spread over the file, requests/s (wrk).
   Both alternate between callrec, nginx (sendfile on) and a bare Starlette ``FileResponse``
   app on the same HTTP server as callrec for ``--rounds`` rounds; the figures are medians and
   ratios of medians.
   With ``--baseline DIR`` a second callrec runs the code of the source tree ``DIR`` (e.g.
   ``git worktree add DIR <commit>``) on the same data, measured in the same rounds: a
   before/after comparison on equal terms.
3. 200 concurrent full downloads (curl) of a large file from callrec: every one must be a
   200 with every byte, and the server's peak resident memory (VmHWM) must stay < 300 MB.

Needs wrk and curl; installs nginx with apt-get when it is missing (Debian).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import json
import os
import pwd
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from servers import BIN, add_admin, callrec, free_port, same_server, serving

HERE = Path(__file__).resolve().parent
PASSWORD = "bench-password"
CCID = "bench"
RECORDING = "call-1"
RANGE_BYTES = 64 * 1024
RSS_LIMIT_MB = 300

# A bare Starlette app serving one file with FileResponse (ranges, threads per read): what
# "just use the framework's file response" gives on the same server.
FILE_APP = """
import os
from starlette.applications import Starlette
from starlette.responses import FileResponse
from starlette.routing import Route

FILE = os.environ["BENCH_FILE"]


async def serve(request):
    return FileResponse(FILE, media_type="audio/mpeg")


app = Starlette(routes=[Route("/{name}", serve)])
"""

NGINX_CONF = """
{user}
worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    keepalive_requests 1000000;
    client_body_temp_path {work}/nginx-tmp;
    proxy_temp_path {work}/nginx-tmp;
    fastcgi_temp_path {work}/nginx-tmp;
    uwsgi_temp_path {work}/nginx-tmp;
    scgi_temp_path {work}/nginx-tmp;
    types {{ audio/mpeg mp3; }}
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
}}
"""

# wrk script: a 64 KiB range at an offset that walks through the file.
RANGE_LUA = """
local size = tonumber(os.getenv("BENCH_SIZE"))
local span = tonumber(os.getenv("BENCH_RANGE"))
local slots = math.floor(size / span)
local n = 0
request = function()
  n = (n + 7919) % slots
  local first = n * span
  wrk.headers["Range"] = "bytes=" .. first .. "-" .. (first + span - 1)
  return wrk.format("GET", wrk.path)
end
"""


def ensure_nginx() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/sbin/nginx") if Path(p).exists()), None
    )
    if found:
        return found
    print("nginx is missing: apt-get install -y nginx ...", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "nginx"]
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=True)
        subprocess.run(install, env=env, capture_output=True, check=True)
    return shutil.which("nginx") or "/usr/sbin/nginx"


def basic(user: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{PASSWORD}".encode()).decode()


def request(port: int, method: str, path: str, user: str, body: bytes | None = None) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {"Authorization": basic(user), "Content-Type": "application/json"}
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    data = response.read()
    if response.status != 200:
        raise SystemExit(f"{method} {path}: {response.status} {data[:200]!r}")
    return data


def upload(port: int, media_id: str, data_file: Path) -> None:
    """Declare the media file on the recording and upload its bytes through the ops API."""
    ops = f"/api/v2/ops/contact-centers/{CCID}/recordings"
    doc = {
        "id": RECORDING,
        "region": "bench",
        "startTime": "2024-01-01T00:00:00Z",
        "mediaFiles": [{"mediaId": media_id, "type": "audio/mpeg"}],
    }
    request(port, "POST", ops, "bench-ops", json.dumps(doc).encode())
    request(port, "PUT", f"{ops}/{RECORDING}/media/{media_id}", "bench-ops", data_file.read_bytes())


def run_wrk(url: str, seconds: float, connections: int, *extra: str) -> float:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s", "--timeout", "10s", *extra, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise SystemExit(f"wrk saw errors against {url}:\n{out}")
    line = next(x for x in out.splitlines() if x.startswith("Requests/sec:"))
    return float(line.split()[1])


@dataclass
class Rates:
    callrec: list[float] = field(default_factory=list)
    nginx: list[float] = field(default_factory=list)
    starlette: list[float] = field(default_factory=list)
    baseline: list[float] = field(default_factory=list)


@dataclass
class Streams:
    count: int
    size: int
    ok: int
    seconds: float
    peak_rss_mb: float
    errors: list[str]


def rss_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


@contextmanager
def peak_rss(pid: int) -> Iterator[list[float]]:
    """The server's peak resident memory (MB) over the block: the kernel's high-water mark
    (VmHWM, reset first) and 20 samples/s of VmRSS, whichever is higher.

    Reset because the first sign-in verifies an argon2 hash (64 MiB while it runs), which is
    no part of streaming; the streams phase signs in with credentials already verified.
    """
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM (Linux >= 4.0)
    peak = [0.0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], rss_kb(pid, "VmRSS") / 1024)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield peak
    finally:
        done.set()
        sampler.join()
        peak[0] = max(peak[0], rss_kb(pid, "VmHWM") / 1024)


def run_streams(port: int, path: str, size: int, count: int, pid: int) -> Streams:
    """``count`` curl processes download the file at once; each must get all the bytes."""
    url = f"http://127.0.0.1:{port}{path}"
    started = time.perf_counter()
    with peak_rss(pid) as peak:
        procs = [
            subprocess.Popen(
                [
                    "curl",
                    "-s",
                    "-o",
                    "/dev/null",
                    "--max-time",
                    "300",
                    "-H",
                    f"Authorization: {basic('bench-admin')}",
                    "-w",
                    "%{http_code} %{size_download}",
                    url,
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(count)
        ]
        errors, ok = [], 0
        for proc in procs:
            out, _ = proc.communicate()
            if out == f"200 {size}":
                ok += 1
            else:
                errors.append(out or f"curl exit {proc.returncode}")
    return Streams(count, size, ok, time.perf_counter() - started, peak[0], errors)


def write_file(path: Path, size: int) -> None:
    block = os.urandom(1 << 20)
    with path.open("wb") as out:
        for offset in range(0, size, len(block)):
            out.write(block[: min(len(block), size - offset)])


def measure(args: argparse.Namespace, work: Path) -> tuple[Rates, Rates, Streams]:
    env = {**os.environ, "CALLREC_DATA_DIR": str(work / "data"), "CALLREC_LOG_LEVEL": "warning"}
    env.pop("CALLREC_STORAGE_CONFIG", None)
    env.pop("CALLREC_DATABASE_URL", None)
    callrec(env, "users", "add", "bench-ops", "--ops", "--password-stdin", stdin=PASSWORD)
    add_admin(env, "bench-admin", CCID, PASSWORD)
    small, large = work / "five.mp3", work / "large.mp3"
    write_file(small, args.size_mb * 1_000_000)
    write_file(large, args.large_mb * 1_000_000)
    port, nginx_port, file_port = free_port(), free_port(), free_port()
    serve = [str(BIN / "callrec"), "serve", "--port", str(port)]
    with serving(serve, port, env, "/healthz") as pid:
        upload(port, "five.mp3", small)
        upload(port, "large.mp3", large)
        media_root = work / "data" / "media"
        served = media_root / CCID / RECORDING / "five.mp3"  # the very file callrec serves
        (work / "nginx-tmp").mkdir()
        conf = work / "nginx.conf"
        # Started by root, nginx's workers would drop to "nobody": keep them this user.
        user = f"user {pwd.getpwuid(os.geteuid()).pw_name};" if os.geteuid() == 0 else ""
        conf.write_text(NGINX_CONF.format(user=user, work=work, port=nginx_port, root=media_root))
        (work / "file_app.py").write_text(FILE_APP)
        nginx = [ensure_nginx(), "-c", str(conf), "-p", str(work), "-e", str(work / "nginx.log")]
        starlette = same_server(work, "file_app:app", file_port)
        file_env = {**env, "BENCH_FILE": str(served)}
        play = f"/api/v2/recordings/{RECORDING}/play/five.mp3"
        with contextlib.ExitStack() as stack:
            stack.enter_context(serving(nginx, nginx_port, env, "/"))
            stack.enter_context(serving(starlette, file_port, file_env, "/x"))
            urls = {
                "callrec": f"http://127.0.0.1:{port}{play}",
                "nginx": f"http://127.0.0.1:{nginx_port}/{CCID}/{RECORDING}/five.mp3",
                "starlette": f"http://127.0.0.1:{file_port}/five.mp3",
            }
            if args.baseline is not None:
                base_port = free_port()
                base_env = {**env, "PYTHONPATH": str(args.baseline.resolve() / "src")}
                base = [str(BIN / "callrec"), "serve", "--port", str(base_port)]
                stack.enter_context(serving(base, base_port, base_env, "/healthz"))
                urls["baseline"] = f"http://127.0.0.1:{base_port}{play}"
            auth = ["-H", f"Authorization: {basic('bench-admin')}"]
            lua = work / "range.lua"
            lua.write_text(RANGE_LUA)
            os.environ.update(BENCH_SIZE=str(served.stat().st_size), BENCH_RANGE=str(RANGE_BYTES))
            full, ranged = Rates(), Rates()
            print("warming up ...", file=sys.stderr)
            for url in urls.values():
                run_wrk(url, 1, args.connections, *auth)
            for round_no in range(1, args.rounds + 1):
                print(f"round {round_no}/{args.rounds} ...", file=sys.stderr)
                for name, url in urls.items():
                    rate = run_wrk(url, args.duration, args.connections, *auth)
                    getattr(full, name).append(rate)
                for name, url in urls.items():
                    rate = run_wrk(url, args.duration, args.connections, *auth, "-s", str(lua))
                    getattr(ranged, name).append(rate)
        print(f"{args.streams} concurrent streams ...", file=sys.stderr)
        path = f"/api/v2/recordings/{RECORDING}/play/large.mp3"
        streams = run_streams(port, path, large.stat().st_size, args.streams, pid)
    return full, ranged, streams


def fmt(values: list[float]) -> str:
    return ", ".join(f"{v:,.0f}" for v in values)


def report(args: argparse.Namespace, full: Rates, ranged: Rates, streams: Streams) -> bool:
    print(f"\n## Media streaming: {args.size_mb} MB file, local store, loopback\n")
    compared = bool(full.baseline)
    print(
        "| requests/s, median (rounds) | callrec | nginx, sendfile | Starlette FileResponse "
        + ("| baseline callrec | baseline / nginx " if compared else "")
        + "| callrec / nginx | aim |"
    )
    print("|---|---|---|---|---|---|" + ("---|---|" if compared else ""))
    passed = True
    for label, rates, aim in (
        (f"whole file ({args.size_mb} MB)", full, 0.50),
        ("64 KiB range", ranged, 0.25),
    ):
        ours, nginx = statistics.median(rates.callrec), statistics.median(rates.nginx)
        bare = statistics.median(rates.starlette)
        ratio = ours / nginx
        passed &= ratio >= aim
        then = ""
        if compared:
            old = statistics.median(rates.baseline)
            then = f"| {old:,.0f} ({fmt(rates.baseline)}) | {old / nginx:.0%} "
        print(
            f"| {label} | {ours:,.0f} ({fmt(rates.callrec)}) | {nginx:,.0f} ({fmt(rates.nginx)}) "
            f"| {bare:,.0f} ({fmt(rates.starlette)}) {then}| **{ratio:.0%}** | ≥ {aim:.0%} |"
        )
    ok = streams.ok == streams.count and streams.peak_rss_mb < RSS_LIMIT_MB
    rate = streams.count * streams.size / streams.seconds / 1e9
    passed &= ok
    print(
        f"\n{streams.count} concurrent streams of a {streams.size / 1e6:,.0f} MB file: "
        f"{streams.ok}/{streams.count} complete and correct, {len(streams.errors)} errors, "
        f"{streams.seconds:.1f} s ({rate:.2f} GB/s), "
        f"server peak RSS {streams.peak_rss_mb:.0f} MB (aim: < {RSS_LIMIT_MB} MB)"
    )
    for error in streams.errors[:5]:
        print(f"  error: {error}")
    print(f"\nall aims met: {passed}")
    return passed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="alternated rounds")
    parser.add_argument("--connections", type=int, default=8, help="wrk connections")
    parser.add_argument("--size-mb", type=int, default=5, help="the downloaded file, MB")
    parser.add_argument("--large-mb", type=int, default=100, help="the streamed file, MB")
    parser.add_argument("--streams", type=int, default=200, help="concurrent streams")
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="DIR",
        help="also measure callrec from this source tree (a worktree of another commit)",
    )
    args = parser.parse_args()
    for tool in ("wrk", "curl"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is needed: apt-get install {tool}")
    work = Path(tempfile.mkdtemp(prefix="callrec-media-bench-"))
    try:
        passed = report(args, *measure(args, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not passed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
