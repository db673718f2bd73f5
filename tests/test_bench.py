"""The search benchmark runs end to end, and every answer it got is the right one.

``bench/run.py`` at a small size on both backends, without wrk: every query must return the
same recordings on SQLite and PostgreSQL, as the naive plan (plain full scans) and as the
reference matcher over every generated recording. Timings are printed, never judged here.
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
import pytest
from psycopg import sql

BENCH = Path(__file__).resolve().parent.parent / "bench"
SIZE = 3000
NAIVE_QUERIES = 5


@pytest.fixture
def bench_database(pg_server: Any) -> Iterator[str]:
    """A database name of this test's own; the benchmark creates it, the test drops it."""
    name = f"callrec_bench_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(pg_server.url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def run_bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCH / "run.py"), "--size", str(SIZE), "--no-throughput", *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_every_answer_matches_the_reference_and_the_naive_plan(
    pg_server: Any, bench_database: str
) -> None:
    done = run_bench(
        "--backends",
        "sqlite,postgresql",
        "--queries",
        "10",
        "--naive-queries",
        str(NAIVE_QUERIES),
        "--reference",
        "--postgres-url",
        pg_server.url,
        "--postgres-database",
        bench_database,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    lines = done.stdout.splitlines()
    first = f"The first {NAIVE_QUERIES} queries of each class returned exactly"
    for verdict in (
        "Every query returned the same recordings on every backend: True",
        f"{first} the naive plan's recordings: True",
        f"{first} the reference matcher's recordings (over all {SIZE:,}): True",
    ):
        assert verdict in lines, done.stdout
    _, search, naive = tables(lines)
    # The naive plan ran for every query class on both backends, a figure in every cell.
    assert "sqlite naive p50" in naive[0]
    assert "postgresql naive p50" in naive[0]
    classes = [row[0] for row in search[2:]]
    assert classes
    # Per backend p50, p95, p99 and the second pass's p95; then the median results.
    assert "postgresql p95, 2nd pass" in search[0]
    for row in search[2:]:
        assert len(row) == 1 + 2 * 4 + 1, row
        assert all(float(cell) >= 0 for cell in row[1:]), row
    assert [row[0] for row in naive[2:]] == classes
    for row in naive[2:]:
        assert len(row) == 1 + 2 * 4, row
        assert all(float(cell.removesuffix("x").replace(",", "")) >= 0 for cell in row[1:]), row


def tables(lines: list[str]) -> list[list[list[str]]]:
    """The Markdown tables of the output, as rows of cells."""
    found: list[list[list[str]]] = []
    previous = ""
    for line in lines:
        if line.startswith("|"):
            if not previous.startswith("|"):
                found.append([])
            found[-1].append([cell.strip() for cell in line.strip("|").split("|")])
        previous = line
    return found


@pytest.fixture
def bench_run(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """``bench/run.py`` imported (its helpers are plain modules beside it)."""
    monkeypatch.syspath_prepend(str(BENCH))
    before = set(sys.modules)
    yield importlib.import_module("run")
    for name in {"run", "naive", "reference", "servers"} - before:
        sys.modules.pop(name, None)


def test_a_wrong_answer_fails_naming_its_class_and_query(bench_run: ModuleType) -> None:
    queries = [{"callerPhoneNumber": "16504668888"}, {"userName": "kim AND lee"}]
    right = [["rec-1"], ["rec-2", "rec-3"]]

    def backend(name: str, answers: list[list[str]]) -> Any:
        row = bench_run.SearchResult("caller exact", queries, [1.0] * 4, answers * 2)
        naive = bench_run.NaiveResult([1.0, 1.0], right)
        return bench_run.BackendRun(name, 1.0, [], [], [], [row], {"caller exact": naive})

    args = argparse.Namespace(naive_queries=2, size=3)
    reference = {"caller exact": right}
    good = backend("sqlite", right)
    assert bench_run.check(args, [good, good], reference) == []
    wrong = backend("postgresql", [["rec-1"], ["rec-2", "rec-4"]])
    problems = bench_run.check(args, [good, wrong], reference)
    # Against the other backend, the naive plan and the reference: one line each.
    assert len(problems) == 3, problems
    for problem in problems:
        assert problem.startswith("postgresql, class 'caller exact', query "), problem
        assert "{'userName': 'kim AND lee'}" in problem, problem
        assert "first difference at position 1" in problem, problem


def test_the_sample_spans_the_whole_file(
    bench_run: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bench_run, "SAMPLE", 50)
    jsonl, sample = bench_run.generate(tmp_path, 1000)
    every = [
        line.split('"id": "', 1)[1].split('"', 1)[0] for line in jsonl.read_text().splitlines()
    ]
    assert [r["id"] for r in sample] == every[::20]
    assert sample[-1]["id"] == every[980]  # from the last tenth, not the first 50


def test_the_import_floor_stores_what_the_import_stored(tmp_path: Path) -> None:
    """``bench/import_floor.py`` at a small size: SQLite alone stores the imported rows again
    and builds every structure the import built (it fails otherwise), and the table adds up."""
    from callrec.demo import demo_jsonl

    jsonl = tmp_path / "recordings.jsonl"
    demo_jsonl(jsonl, 2000, seed=7, media=False)
    done = subprocess.run(
        [sys.executable, str(BENCH / "import_floor.py"), str(jsonl), "--work", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    print(done.stdout, done.stderr)
    assert done.returncode == 0, done.stderr
    rows = {
        cells[0]: cells[1]
        for line in done.stdout.splitlines()
        if line.startswith("| ")
        and len(cells := [c.strip() for c in line.strip("|").split("|")]) == 2
    }
    assert "2,000 recordings" in done.stdout
    parts = [float(v) for k, v in rows.items() if k.split(":")[0] in ("orjson", "zstd", "SQLite")]
    assert len(parts) == 7, rows
    assert all(v > 0 for v in parts), rows
    assert float(rows["floor: the parts above, in all"]) == pytest.approx(sum(parts), abs=0.02)
    assert [name for name in os.listdir(tmp_path) if name != "recordings.jsonl"] == []
