"""callrec benchmarks: one command, a printed table, baselines measured in the same run.

    make bench                      # 100k recordings (default)
    make bench ARGS="--size 20000 --duration 3"

What it measures (see docs/performance.md for results and how to read them):
1. `callrec import` rate (recordings/s) of demo-style JSON lines into a fresh database.
2. GET /api/v2/recordings/{id} requests/s through HTTP (wrk, rotating ids, Basic auth)
   beside a bare Starlette JSON endpoint served the same way, alternated over several rounds;
   the ratio of medians is the figure. Then again while another process commits recordings
   at a steady rate (``--writes``, `bench/writer.py`), as recorders do beside the readers.
3. Search latency (p50/p95/p99 over sequential keep-alive requests) per query class, beside
   the naive plan (plain full scans with the same ordering, `bench/naive.py`) run directly
   against the same database.
4. That every query returned exactly the same recordings on every backend, as the naive plan
   and, at small sizes, as the reference matcher over every generated recording
   (`bench/reference.py`); any difference fails the run.

Machines are noisy: quote ratios and medians, never single runs.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode, urlsplit, urlunsplit

from naive import NaiveResult, measure_naive
from reference import Reference
from servers import BIN, add_admin, callrec, free_port, same_server, serving

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PASSWORD = "bench-password"
CCID = "demo"
PAGE = "page"  # a query's key for the page measured (not sent; the pages before it are walked)


def auth_header() -> str:
    return "Basic " + base64.b64encode(f"bench-admin:{PASSWORD}".encode()).decode()


def run_wrk(port: int, paths_file: Path, seconds: float, connections: int) -> float:
    script = HERE / "rotate.lua"
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{int(seconds)}s",
            "-s",
            str(script),
            "-H",
            f"Authorization: {auth_header()}",
            f"http://127.0.0.1:{port}/",
        ],
        env={**os.environ, "BENCH_PATHS": str(paths_file)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"wrk saw errors:\n{out}")
    line = next(x for x in out.splitlines() if x.startswith("Requests/sec:"))
    return float(line.split()[1])


SAMPLE = 20000  # recordings the query values and the GET ids are drawn from


def generate(work: Path, size: int) -> tuple[Path, list[dict]]:
    """The benchmark's recordings (made once per work directory: seed 7 is deterministic),
    and ``SAMPLE`` of them spread evenly over the whole file (the generator writes calls in
    time order: the first ones alone would ask only about the oldest calls)."""
    from callrec.demo import demo_jsonl

    jsonl = work / f"recordings-{size}.jsonl"
    if not jsonl.exists():
        print(f"generating {size:,} recordings ...", file=sys.stderr)
        partial = jsonl.with_suffix(".partial")
        demo_jsonl(partial, size, seed=7, media=False)
        partial.rename(jsonl)
    step = max(1, size // SAMPLE)
    with jsonl.open() as handle:
        picked = (line for number, line in enumerate(handle) if number % step == 0)
        sample = [json.loads(line) for _, line in zip(range(SAMPLE), picked, strict=False)]
    return jsonl, sample


def load(jsonl: Path, size: int, env: dict[str, str]) -> float:
    """Import through the real CLI and add the benchmark's admin; returns recordings/s."""
    started = time.perf_counter()
    callrec(env, "import", str(jsonl), "--contact-center", CCID)
    rate = size / (time.perf_counter() - started)
    add_admin(env, "bench-admin", CCID, PASSWORD)
    return rate


def normalise(number: str) -> str:
    return "".join(c for c in number if c.isascii() and c.isalnum())


def _names(rec: dict) -> list[dict]:
    return [e["contact"] for e in rec["eventHistory"] if e["contact"].get("userName")]


def _start_ms(rec: dict) -> int:
    from callrec.query import parse_instant

    return parse_instant(rec["startTime"], "startTime")


class QueryMaker:
    """Realistic query values drawn from the loaded data, one builder per query class."""

    def __init__(self, sample: list[dict], rng: random.Random) -> None:
        self.rng = rng
        self.sample = sample
        self.with_agents = [r for r in sample if _names(r)]
        counts: dict[str, int] = {}
        for rec in self.with_agents:
            for contact in _names(rec):
                counts[contact["firstName"]] = counts.get(contact["firstName"], 0) + 1
        self.first_names = list(counts)
        self.common = sorted(counts, key=lambda n: -counts[n])[:5]
        self.non_ascii = [n for n in counts if not n.isascii()] or self.common
        used = {normalise(r["callerPhoneNumber"])[:2] for r in sample}
        self.unused_prefix = next((p for p in map(str, range(10, 100)) if p not in used), "0a")

    def rec(self) -> dict:
        return self.rng.choice(self.sample)

    def agent_rec(self) -> dict:
        return self.rng.choice(self.with_agents)

    def caller(self) -> str:
        return normalise(self.rec()["callerPhoneNumber"])

    def around(self, rec: dict, half_width_ms: int) -> dict[str, str]:
        start = _start_ms(rec)
        return {"startTime": str(start - half_width_ms), "endTime": str(start + half_width_ms)}

    def classes(self) -> dict[str, Callable[[], dict[str, str]]]:
        day = 86_400_000
        return {
            "caller exact": lambda: {"callerPhoneNumber": self.rec()["callerPhoneNumber"]},
            "caller prefix 1650*": lambda: {"callerPhoneNumber": self.caller()[:4] + "*"},
            "caller suffix *8888": lambda: {"callerPhoneNumber": "*" + self.caller()[-4:]},
            "caller infix *4668*": lambda: {"callerPhoneNumber": "*" + self.caller()[3:7] + "*"},
            "caller dense *12*": lambda: {"callerPhoneNumber": "*12*"},
            "caller 2-char prefix, none": lambda: {"callerPhoneNumber": self.unused_prefix + "*"},
            "caller several wildcards": self.several_wildcards,
            "dialed exact + day": self.dialed_in_day,
            "nothing matches": lambda: {"callerPhoneNumber": "99999999999999"},
            "window 1 hour": lambda: self.window(3_600_000),
            "window 1 year": lambda: self.window(365 * day),
            "startTime=0": lambda: {"startTime": "0"},
            "userName common": lambda: {"userName": self.rng.choice(self.common)},
            "userName exact username": lambda: {
                "userName": self.rng.choice(_names(self.agent_rec()))["userName"]
            },
            "userName wildcard": lambda: {"userName": self.rng.choice(self.common)[:3] + "*"},
            "userName OR of 3": lambda: {
                "userName": " ".join(self.rng.sample(self.first_names, 3))
            },
            "userName AND of 2": self.user_and,
            "userName non-ASCII upper": lambda: {
                "userName": self.rng.choice(self.non_ascii).upper()
            },
            "caller + window + user": self.combined,
            "deep paging, page 50": lambda: {"userName": self.rng.choice(self.common), PAGE: "50"},
        }

    def several_wildcards(self) -> dict[str, str]:
        caller = self.caller()  # e.g. *650*8888: an area code somewhere, and how it ends
        return {"callerPhoneNumber": f"*{caller[2:5]}*{caller[-4:]}"}

    def window(self, width_ms: int) -> dict[str, str]:
        start = _start_ms(self.rec())
        return {"startTime": str(start), "endTime": str(start + width_ms)}

    def dialed_in_day(self) -> dict[str, str]:
        rec = self.rec()
        return {"dialedPhoneNumber": rec["dialedPhoneNumber"], **self.around(rec, 43_200_000)}

    def user_and(self) -> dict[str, str]:
        contacts = _names(self.agent_rec())
        return {"userName": f"{contacts[0]['firstName']} AND {contacts[-1]['lastName']}"}

    def combined(self) -> dict[str, str]:
        rec = self.agent_rec()
        return {
            "callerPhoneNumber": rec["callerPhoneNumber"],
            "userName": _names(rec)[0]["firstName"],
            **self.around(rec, 30 * 86_400_000),
        }


def query_classes(
    sample: list[dict], rng: random.Random, per_class: int
) -> dict[str, list[dict[str, str]]]:
    maker = QueryMaker(sample, rng)
    return {name: [make() for _ in range(per_class)] for name, make in maker.classes().items()}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class SearchResult:
    name: str
    queries: list[dict[str, str]]
    times: list[float]  # ms per request: every query, then every query again
    answers: list[list[str]]  # the ids each request returned, in the same order

    def p(self, q: float) -> float:
        return percentile(self.times, q)

    def warm(self, q: float) -> float:
        """Of the second pass only: every query's pages were read once already."""
        return percentile(self.times[len(self.queries) :], q)

    def of_first(self, n: int) -> tuple[list[float], list[list[list[str]]]]:
        """Times and answers (both passes) of the first ``n`` queries."""
        passes = range(0, len(self.times), len(self.queries))
        times = [self.times[i + j] for i in range(n) for j in passes]
        return times, [[self.answers[i + j] for j in passes] for i in range(n)]


def split_page(params: dict[str, str]) -> tuple[dict[str, str], int]:
    """A query's API parameters, and which page of it is measured (the bench's own key)."""
    return {k: v for k, v in params.items() if k != PAGE}, int(params.get(PAGE, "1"))


def page_path(
    conn: http.client.HTTPConnection, headers: dict[str, str], params: dict[str, str]
) -> str:
    """The path of the query's measured page: page N is reached by following the ``Link``
    next URL from page 1 (untimed), as a client pages."""
    api_params, page = split_page(params)
    path = "/api/v2/recordings?" + urlencode(api_params)
    for _ in range(page - 1):
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read()
        link = response.getheader("Link")
        if response.status != 200 or link is None:
            break  # fewer pages than that: the last one is measured
        url = urlsplit(link[1 : link.index(">")])
        path = urlunsplit(("", "", url.path, url.query, ""))
    return path


def measure_search(port: int, classes: dict[str, list[dict[str, str]]]) -> list[SearchResult]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": auth_header()}
    rows = []
    for name, queries in classes.items():
        times, answers = [], []
        paths = [page_path(conn, headers, params) for params in queries]
        for path in paths * 2:  # the first pass warms caches; both are measured
            started = time.perf_counter()
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            body = response.read()
            times.append((time.perf_counter() - started) * 1000)
            if response.status != 200:
                raise SystemExit(f"{name}: {response.status} {body[:200]!r}")
            answers.append([r["id"] for r in json.loads(body)["recordings"]])
        rows.append(SearchResult(name, queries, times, answers))
    return rows


def fresh_postgres_database(admin_url: str, name: str) -> str:
    """Drop and create the database ``name`` beside ``admin_url``; returns its URL."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))


@dataclass
class BackendRun:
    backend: str
    import_rate: float
    get_rates: list[float]
    bare_rates: list[float]
    writing_rates: list[float]  # GET while bench/writer.py commits --writes recordings/s
    search: list[SearchResult]
    naive: dict[str, NaiveResult]


def run_backend(
    backend: str,
    args: argparse.Namespace,
    work: Path,
    jsonl: Path,
    sample: list[dict],
    classes: dict[str, list[dict[str, str]]],
) -> BackendRun:
    from callrec.settings import Settings

    database_url = ""
    if backend == "postgresql":
        database_url = urlunsplit(
            urlsplit(args.postgres_url)._replace(path=f"/{args.postgres_database}")
        )
        if not args.reuse:
            fresh_postgres_database(args.postgres_url, args.postgres_database)
    elif not args.reuse:
        shutil.rmtree(work / backend, ignore_errors=True)
    env = {
        **os.environ,
        "CALLREC_DATA_DIR": str(work / backend),
        "CALLREC_LOG_LEVEL": "warning",
        "CALLREC_DATABASE_URL": database_url,
    }
    rate = float("nan")
    if not args.reuse:
        print(f"[{backend}] importing {args.size:,} recordings ...", file=sys.stderr)
        rate = load(jsonl, args.size, env)
    run = BackendRun(backend, rate, [], [], [], [], {})
    port = free_port()
    serve = [str(BIN / "callrec"), "serve", "--port", str(port)]
    with serving(serve, port, env, "/healthz"):
        if args.throughput:
            measure_throughput(run, port, args, work, env, sample)
        print(f"[{backend}] search latency ...", file=sys.stderr)
        run.search = measure_search(port, classes)
    if args.naive_queries:
        print(f"[{backend}] the naive plan ...", file=sys.stderr)
        # The database the server used: its settings, resolved from the same variables.
        settings = Settings(data_dir=work / backend, database_url=database_url or None)
        subset = {name: queries[: args.naive_queries] for name, queries in classes.items()}
        run.naive = measure_naive(settings.resolved_database_url, CCID, subset, args.page_size)
    return run


def measure_throughput(
    run: BackendRun, port: int, args: argparse.Namespace, work: Path, env: dict, sample: list[dict]
) -> None:
    paths = work / "paths.txt"
    paths.write_text("".join(f"/api/v2/recordings/{r['id']}\n" for r in sample[:5000]))
    bare_port = free_port()
    bare = same_server(HERE, "bare_app:app", bare_port)
    with serving(bare, bare_port, env, "/"):
        print(
            f"[{run.backend}] GET /recordings/{{id}} against the bare endpoint ...", file=sys.stderr
        )
        for warm in (port, bare_port):  # caches, and the one slow password check
            run_wrk(warm, paths, 1, args.connections)
        for _ in range(args.rounds):
            run.get_rates.append(run_wrk(port, paths, args.duration, args.connections))
            run.bare_rates.append(run_wrk(bare_port, paths, args.duration, args.connections))
    if args.writes:
        print(f"[{run.backend}] GET while writing {args.writes}/s ...", file=sys.stderr)
        for _ in range(args.rounds):
            run.writing_rates.append(writing(port, paths, args, env))


def writing(port: int, paths: Path, args: argparse.Namespace, env: dict) -> float:
    """GET requests/s while ``bench/writer.py`` commits ``args.writes`` recordings/s."""
    writer = subprocess.Popen(
        [sys.executable, str(HERE / "writer.py"), str(args.writes), str(args.duration + 2)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(1)  # started, and writing
    rate = run_wrk(port, paths, args.duration, args.connections)
    out, _ = writer.communicate(timeout=60)
    if writer.returncode != 0 or float(out) < 0.9 * args.writes:
        raise SystemExit(f"the writer did not keep up {args.writes} writes/s: {out!r}")
    return rate


def report(
    args: argparse.Namespace, runs: list[BackendRun], reference: dict[str, list[list[str]]] | None
) -> None:
    print(f"\n## callrec benchmark: {args.size:,} recordings\n")
    if args.throughput:
        print(
            "| backend | import, recordings/s | GET /recordings/{id}, requests/s (rounds) "
            "| bare Starlette JSON, requests/s (rounds) | ratio of medians "
            f"| GET while writing {args.writes}/s (rounds) | its ratio |"
        )
        print("|---|---|---|---|---|---|---|")
        for run in runs:
            ours, base = statistics.median(run.get_rates), statistics.median(run.bare_rates)
            while_writing = "- | -"
            if run.writing_rates:
                busy = statistics.median(run.writing_rates)
                while_writing = f"{busy:,.0f} ({fmt(run.writing_rates)}) | **{busy / base:.0%}**"
            print(
                f"| {run.backend} | {rate_text(run.import_rate)} "
                f"| {ours:,.0f} ({fmt(run.get_rates)}) "
                f"| {base:,.0f} ({fmt(run.bare_rates)}) | **{ours / base:.0%}** | {while_writing} |"
            )
    else:
        print("| backend | import, recordings/s |\n|---|---|")
        for run in runs:
            print(f"| {run.backend} | {rate_text(run.import_rate)} |")
    header = " | ".join(
        f"{b} p50 | {b} p95 | {b} p99 | {b} p95, 2nd pass" for b in (r.backend for r in runs)
    )
    print(f"\n| query class | {header} | median results |")
    print("|---|" + "---|" * (4 * len(runs)) + "---|")
    for i, row in enumerate(runs[0].search):
        cells = " | ".join(
            f"{r.search[i].p(0.5):.1f} | {r.search[i].p(0.95):.1f} | {r.search[i].p(0.99):.1f}"
            f" | {r.search[i].warm(0.95):.1f}"
            for r in runs
        )
        hits = statistics.median(len(a) for a in row.answers)
        print(f"| {row.name} | {cells} | {hits:g} |")
    if args.naive_queries:
        report_naive(args.naive_queries, runs)
    problems = check(args, runs, reference)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        raise SystemExit(f"{len(problems)} queries returned other recordings than they should")


def report_naive(n: int, runs: list[BackendRun]) -> None:
    print(
        f"\nThe naive plan (a plain full scan, same ordering and page size; in-process) over the"
        f" first {n} queries of each class, beside callrec over the same queries (through HTTP):"
    )
    header = " | ".join(
        f"{b} p50 | {b} naive p50 | {b} naive p95 | {b} speed-up" for b in (r.backend for r in runs)
    )
    print(f"\n| query class | {header} |")
    print("|---|" + "---|" * (4 * len(runs)))
    for i, row in enumerate(runs[0].search):
        cells = []
        for run in runs:
            ours = percentile(run.search[i].of_first(n)[0], 0.5)
            naive = run.naive[row.name].times
            cells.append(
                f"{ours:.1f} | {percentile(naive, 0.5):.1f} | {percentile(naive, 0.95):.1f}"
                f" | {percentile(naive, 0.5) / ours:,.1f}x"
            )
        print(f"| {row.name} | {' | '.join(cells)} |")


def check(
    args: argparse.Namespace, runs: list[BackendRun], reference: dict[str, list[list[str]]] | None
) -> list[str]:
    """Print whether every answer was the expected one; returns what was not."""
    problems: list[str] = []

    def verdict(statement: str, found: list[str]) -> None:
        print(f"{statement}: {not found}")
        problems.extend(found)

    print()
    if len(runs) > 1:
        first = runs[0]
        verdict(
            "Every query returned the same recordings on every backend",
            [
                problem
                for run in runs[1:]
                for row, base in zip(run.search, first.search, strict=True)
                for problem in differences(
                    run.backend, row, first.backend, base.answers[: len(base.queries)]
                )
            ],
        )
    n = args.naive_queries
    if n:
        verdict(
            f"The first {n} queries of each class returned exactly the naive plan's recordings",
            [
                problem
                for run in runs
                for row in run.search
                for problem in differences(
                    run.backend, row, "the naive plan", run.naive[row.name].answers
                )
            ],
        )
    if reference is not None:
        verdict(
            f"The first {n} queries of each class returned exactly the reference matcher's"
            f" recordings (over all {args.size:,})",
            [
                problem
                for run in runs
                for row in run.search
                for problem in differences(run.backend, row, "the reference", reference[row.name])
            ],
        )
    elif n:
        print(
            f"The reference matcher was not run (above {REFERENCE_SIZE:,} recordings; --reference)"
        )
    return problems


def differences(
    backend: str, row: SearchResult, source: str, expected: list[list[str]]
) -> list[str]:
    """A line per query among the first ``len(expected)`` that answered otherwise (either pass)."""
    _, answers = row.of_first(len(expected))
    found = []
    for params, passes, want in zip(row.queries[: len(expected)], answers, expected, strict=True):
        for got in passes:
            if got != want:
                at = next(k for k in range(len(got) + 1) if got[k : k + 1] != want[k : k + 1])
                found.append(
                    f"{backend}, class {row.name!r}, query {params}: {len(got)} recordings,"
                    f" {source} {len(want)}; first difference at position {at}"
                )
                break
    return found


def rate_text(rate: float) -> str:
    return "-" if math.isnan(rate) else f"{rate:,.0f}"


def fmt(values: list[float]) -> str:
    return ", ".join(f"{v:,.0f}" for v in values)


REFERENCE_SIZE = 50_000


def main() -> None:
    from callrec.settings import Settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100_000, help="recordings to load")
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk round")
    parser.add_argument("--rounds", type=int, default=3, help="alternated A/B rounds")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument(
        "--writes",
        type=int,
        default=100,
        help="recordings/s another process commits during the GET rounds measured while"
        " writing (0: no such rounds)",
    )
    parser.add_argument(
        "--throughput",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure GET /recordings/{id} with wrk (--no-throughput: skip it, no wrk needed)",
    )
    parser.add_argument("--backends", default="sqlite", help="comma-separated: sqlite,postgresql")
    parser.add_argument(
        "--queries", type=int, default=40, help="query values per class (each sent twice)"
    )
    parser.add_argument(
        "--naive-queries",
        type=int,
        default=10,
        help="the first N values of each class also run through the naive plan and are checked"
        " against it and the reference (0: neither)",
    )
    parser.add_argument(
        "--reference",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"check against the pure-Python reference matcher (default: up to"
        f" {REFERENCE_SIZE:,} recordings)",
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "CALLREC_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="an admin URL; the benchmark (re)creates the database --postgres-database beside it",
    )
    parser.add_argument("--postgres-database", default="callrec_bench")
    parser.add_argument(
        "--work",
        type=Path,
        help="keep the generated file and the databases in this directory (default: a"
        " temporary one, removed at the end)",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="query the databases a previous run left in --work (and the PostgreSQL"
        " database) instead of importing again; no import rate is measured",
    )
    args = parser.parse_args()
    args.naive_queries = min(args.naive_queries, args.queries)
    # The page a search returns when it asks for no limit: the servers' setting (same env).
    args.page_size = Settings().page_size
    if args.throughput and not shutil.which("wrk"):
        raise SystemExit("wrk is needed (apt-get install wrk), or --no-throughput")
    if args.reuse and not args.work:
        raise SystemExit("--reuse needs --work")
    work = args.work or Path(tempfile.mkdtemp(prefix="callrec-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        jsonl, sample = generate(work, args.size)
        classes = query_classes(sample, random.Random(11), args.queries)
        runs = [
            run_backend(b, args, work, jsonl, sample, classes) for b in args.backends.split(",")
        ]
        use_reference = args.size <= REFERENCE_SIZE if args.reference is None else args.reference
        reference = None
        if use_reference and args.naive_queries:
            print("[reference] matching every generated recording ...", file=sys.stderr)
            matcher = Reference(jsonl)
            reference = {
                name: [matcher.page(q, args.page_size) for q in queries[: args.naive_queries]]
                for name, queries in classes.items()
            }
        report(args, runs, reference)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
