"""Import's pipeline (worker processes, file order, merges within a file) and SQLite's bulk load
(indexes dropped and built once, and built again after a load that was killed)."""

from __future__ import annotations

import gc
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from callrec import importer
from callrec.demo import demo_jsonl
from callrec.importer import chunk_lines, import_file, read_chunks
from callrec.model import Stored, to_store
from callrec.query import RecordingQuery, matches, parse_query
from callrec.services import Services
from callrec.settings import Settings
from callrec.store import Document, RecordingStore, open_store, pgrows, search_key, sqliterows
from callrec.store import sqlite as sqlite_store
from callrec.store.sqlite import SQLiteStore
from callrec.store.sqliteschema import DERIVED, IDS, build_steps, kind
from conftest import local_recording


@pytest.fixture
def services(tmp_path: Path, database_url: str) -> Iterator[Services]:
    opened = Services.open(Settings(data_dir=tmp_path / "data", database_url=database_url))
    yield opened
    opened.close()


def everything(services: Services, ccid: str) -> list[Document]:
    docs = []
    after = None
    while page := services.store.search(ccid, RecordingQuery(), limit=500, after=after):
        docs += page
        after = search_key(page[-1])
    return docs


def run_import(services: Services, path: Path, jobs: int) -> tuple[int, int, list[tuple[int, str]]]:
    errors: list[tuple[int, str]] = []
    consumed: list[int] = []
    result = import_file(
        services,
        path,
        "cc1",
        jobs=jobs,
        on_error=lambda n, m: errors.append((n, m)),
        on_progress=consumed.append,
    )
    assert sum(consumed) == path.stat().st_size  # progress accounts for every byte
    return result.imported, result.failed, errors


def mixed_file(path: Path) -> dict[int, str]:
    """Demo recordings with bad lines, blank lines and a recording posted twice; returns the
    bad lines' numbers and what their error must mention."""
    demo = path.parent / "demo.jsonl"
    demo_jsonl(demo, 2500, seed=3)
    lines = demo.read_text(encoding="utf-8").splitlines()
    twice_first = local_recording("twice", eventHistory=[{"event": "Joined", "x": 1}])
    twice_again = dict(local_recording("twice"), eventHistory=[{"event": "Left", "x": 2}])
    twice_again.pop("startTime")  # merges with the first: no start of its own is needed
    bad = [
        ("{not json", "JSON"),
        (json.dumps({"id": "no/slash", "region": "r"}), "id"),
        (json.dumps(local_recording("late", startTime="yesterday")), "startTime"),
    ]
    out = [*lines[:3], bad[0][0], "", *lines[3:1200], bad[1][0], json.dumps(twice_first)]
    out += [*lines[1200:], bad[2][0], json.dumps(twice_again)]
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return {out.index(line) + 1: reason for line, reason in bad}


def test_a_line_that_fails_in_an_unforeseen_way_is_reported_and_the_rest_go_on(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importer.prepare

    def prepare(storages: Any, raw: Any, ccid: str) -> Any:
        if raw.get("id") == "odd":
            raise ValueError("Invalid IPv6 URL")  # as urlsplit raised on "http://[x/y"
        return real(storages, raw, ccid)

    monkeypatch.setattr(importer, "prepare", prepare)
    lines = [
        (n, json.dumps(local_recording(name)).encode())
        for n, name in enumerate(["a", "odd", "b"], 1)
    ]
    prepared = importer.prepare_lines("cc1", lines, services.storages)
    assert [(n, keys is not None) for n, _, keys in prepared] == [(1, True), (2, False), (3, True)]
    assert prepared[1][1] == "could not be read (ValueError)"  # no message of the library's


@pytest.mark.parametrize("jobs", [0, 2])
def test_import_in_workers_reports_in_file_order_and_merges_repeats(
    services: Services, tmp_path: Path, jobs: int
) -> None:
    assert_mixed_file_imported(services, tmp_path, jobs)


def assert_mixed_file_imported(services: Services, tmp_path: Path, jobs: int) -> None:
    """Import ``mixed_file``: its errors come in file order, its repeat merges."""
    source = tmp_path / "mixed.jsonl"
    bad = mixed_file(source)
    assert len(bad) == 3

    imported, failed, errors = run_import(services, source, jobs)

    assert [n for n, _ in errors] == sorted(bad)
    for (number, message), reason in zip(errors, [bad[n] for n in sorted(bad)], strict=True):
        assert reason in message, (number, message)
    assert failed == 3
    assert imported == 2502  # the repeat counts as imported twice: it was accepted twice
    docs = everything(services, "cc1")
    assert len(docs) == 2501
    [twice] = [d for d in docs if d["id"] == "twice"]
    assert [e["event"] for e in twice["eventHistory"]] == ["Joined", "Left"]


@pytest.mark.parametrize(("jobs", "load_size"), [(0, 700), (2, 700), (2, 100)])
def test_blocks_joined_and_cut_into_transactions_keep_file_order(
    services: Services, tmp_path: Path, jobs: int, load_size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Blocks written a few at a time, or a block cut into several: errors still come in file
    # order, the repeat still merges (its two lines are in different transactions), nothing
    # is lost, and no transaction holds more than the store's load size.
    monkeypatch.setattr(importer, "CHUNK", 300_000)
    monkeypatch.setattr(services.store, "load_size", load_size)
    loads: list[int] = []
    load = services.store.load
    monkeypatch.setattr(
        services.store, "load", lambda ccid, items: loads.append(len(items)) or load(ccid, items)
    )

    assert_mixed_file_imported(services, tmp_path, jobs)

    # 2,505 lines of about 1.1 kB: blocks of about 270 lines, joined or cut into batches of
    # the load size (of which 3 lines are bad: not loaded).
    assert len(loads) == -(-2505 // load_size)
    assert all(load_size - 3 <= n <= load_size for n in loads[:-1]), loads
    assert sum(loads) == 2502  # the valid lines


def test_batches_cut_from_blocks_hold_every_line_once_and_count_every_byte() -> None:
    blocks = [
        (list(range(start, start + n)), 10 * n + 1)
        for start, n in [(0, 5), (5, 12), (17, 0), (17, 3), (20, 7)]
    ]
    prepared = [([(i, "x", None) for i in lines], size) for lines, size in blocks]
    batches = list(importer._joined(iter(prepared), 4))
    assert [len(batch) for batch, _ in batches] == [4, 4, 4, 4, 4, 4, 3]
    assert [n for batch, _ in batches for n, _, _ in batch] == list(range(27))
    # Each block's bytes come with the batch of its last line: 0-4 (51) with the second;
    # 5-16 (121), the empty block (1) and 17-19 (31) with the fifth; 20-26 with the last.
    assert [size for _, size in batches] == [0, 51, 0, 0, 153, 0, 71]


# An import killed once its first batch is written, after writing down its workers' pids
# (argv: a data directory, a file of recordings, the file for the pids).
KILLED_IMPORT = """
import multiprocessing, os, signal, sys
from pathlib import Path
from callrec import importer
from callrec.services import Services
from callrec.settings import Settings

def progress(size):
    pids = " ".join(str(p.pid) for p in multiprocessing.active_children())
    Path(sys.argv[3]).write_text(pids)
    os.kill(os.getpid(), signal.SIGKILL)

importer.CHUNK = 50_000
services = Services.open(Settings(data_dir=Path(sys.argv[1])))
services.store.load_size = 50
importer.import_file(services, Path(sys.argv[2]), "cc1", jobs=2, on_error=print,
                     on_progress=progress)
"""


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_workers_end_when_the_import_is_killed(tmp_path: Path) -> None:
    source = tmp_path / "demo.jsonl"
    demo_jsonl(source, 2000, seed=3)
    pids = tmp_path / "pids"
    done = subprocess.run(
        [sys.executable, "-c", KILLED_IMPORT, str(tmp_path / "data"), str(source), str(pids)],
        timeout=300,
    )
    assert done.returncode == -signal.SIGKILL
    workers = [int(pid) for pid in pids.read_text().split()]
    assert len(workers) >= 2  # the two workers (and the resource tracker, maybe)
    deadline = time.monotonic() + 30
    while any(running(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in workers if running(pid)]


def test_workers_and_no_workers_store_the_same(tmp_path: Path) -> None:
    source = tmp_path / "mixed.jsonl"
    mixed_file(source)
    stored = []
    for jobs in (0, 2):
        settings = Settings(data_dir=tmp_path / f"data{jobs}")
        with_services = Services.open(settings)
        try:
            run_import(with_services, source, jobs)
            stored.append(everything(with_services, "cc1"))
        finally:
            with_services.close()
    assert stored[0] == stored[1]


def test_blocks_cover_every_line_with_its_number(tmp_path: Path) -> None:
    source = tmp_path / "lines.jsonl"
    source.write_bytes(b"a\n\n  \nb\r\nc")
    chunks = list(read_chunks(source, size=2))
    assert [first for first, _ in chunks] == [1, 2, 4, 5]  # each block ends a line
    assert [line for chunk in chunks for line in chunk_lines(chunk)] == [
        (1, b"a"),
        (4, b"b\r"),  # a line ends at "\n" only, as the file's lines are read by Python
        (5, b"c"),
    ]
    assert b"".join(block for _, block in chunks) == source.read_bytes()


def test_a_file_that_begins_with_a_byte_order_mark_imports_from_its_first_line(
    services: Services, tmp_path: Path
) -> None:
    source = tmp_path / "bom.jsonl"
    lines = [json.dumps(local_recording(name)) for name in ("first", "second")]
    source.write_bytes(b"\xef\xbb\xbf" + "\n".join(lines).encode() + b"\n")
    assert run_import(services, source, 0) == (2, 0, [])
    mark_inside = tmp_path / "inside.jsonl"  # anywhere else, it is what the line holds
    mark_inside.write_bytes(lines[0].encode() + b"\n\xef\xbb\xbf" + lines[1].encode())
    imported, failed, errors = run_import(services, mark_inside, 0)
    assert (imported, failed, [n for n, _ in errors]) == (1, 1, [2])


def test_blocks_read_are_dropped_from_the_page_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "lines.jsonl"
    source.write_bytes(b"a\nbb\nccc\n")
    advised: list[tuple[int, int, int]] = []
    monkeypatch.setattr(
        importer.os,
        "posix_fadvise",
        lambda fd, offset, length, advice: advised.append((offset, length, advice)),
        raising=False,
    )
    reads = []
    for _, block in read_chunks(source, size=2):
        reads.append(block)
        # Nothing is dropped before the block is handed on.
        assert len(advised) == len(reads) - 1
    assert advised == [(0, n, os.POSIX_FADV_DONTNEED) for n in (2, 5, 9)]
    # A file whose pages cannot be advised on (a pipe, say) reads all the same.

    def refused(*args: Any) -> None:
        raise OSError(29, "Illegal seek")

    monkeypatch.setattr(importer.os, "posix_fadvise", refused)
    assert b"".join(block for _, block in read_chunks(source, size=2)) == source.read_bytes()


# --------------------------------------------------------------------------- SQLite bulk load


def structures(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type IN ('index', 'trigger')")
        return {name for (name,) in rows}


def sample(count: int, tmp_path: Path) -> list[dict[str, Any]]:
    demo = tmp_path / "sample.jsonl"
    demo_jsonl(demo, count, seed=5)
    return [json.loads(line) for line in demo.read_text(encoding="utf-8").splitlines()]


QUERIES = [
    {"callerPhoneNumber": "*41*"},
    {"callerPhoneNumber": "*555*"},
    {"dialedPhoneNumber": "*800*"},
    {"callerPhoneNumber": "1*"},
    {"userName": "james"},
    {"userName": "ja* AND *s* mary"},
]


def assert_dictionary_counts(path: Path) -> None:
    """The names dictionary counts every name's entries (the triggers that keep it were
    dropped during the load: it is filled once at the end)."""
    with closing(sqlite3.connect(path)) as conn:
        counted = conn.execute(
            "SELECT ccid, name, count(*) FROM recording_names GROUP BY ccid, name"
        ).fetchall()
        kept = conn.execute(
            "SELECT ccid, name, entries FROM name_dictionary WHERE entries > 0"
        ).fetchall()
    assert counted
    assert sorted(counted) == sorted(kept)


def assert_trigrams_indexed(path: Path) -> None:
    """Each number's trigram index holds exactly the stored numbers (FTS5's own check
    against its content table raises when an entry is missing or extra)."""
    with closing(sqlite3.connect(path)) as conn:
        for column in ("caller", "dialed"):
            table = f"{column}_fts"
            conn.execute(f"INSERT INTO {table} ({table}, rank) VALUES ('integrity-check', 1)")
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] > 0
            # Filled with a large buffer of pending terms, set back to FTS5's 1 MB after.
            [(hashsize,)] = conn.execute(f"SELECT v FROM {table}_config WHERE k = 'hashsize'")
            assert hashsize == 1 << 20


def assert_searches_match_reference(store: RecordingStore, docs: list[dict[str, Any]]) -> None:
    stored = {d["id"]: d for d in docs}
    for params in QUERIES:
        query = parse_query(params)
        expected = sorted((d for d in stored.values() if matches(query, d)), key=search_key)
        found = store.search("cc1", query, limit=len(stored))
        assert [d["id"] for d in found] == [d["id"] for d in expected[: len(stored)]], params


def test_bulk_load_defers_indexes_on_an_empty_store_only(tmp_path: Path) -> None:
    path = tmp_path / "bulk.db"
    store = SQLiteStore(path)
    docs = sample(400, tmp_path)
    try:
        assert set(DERIVED) <= structures(path)
        with store.bulk_load() as deferred:
            assert deferred
            assert not set(DERIVED) & structures(path)
            store.upsert("cc1", docs)
            # Slow meanwhile, never wrong: infix numbers and name wildcards included.
            assert_searches_match_reference(
                store, store.search("cc1", RecordingQuery(), limit=1000)
            )
        assert set(DERIVED) <= structures(path)
        # The load's and the builds' settings are undone: commits flushed, no sort threads.
        pragmas = [
            store._writer.execute(f"PRAGMA {name}").fetchone()[0]
            for name in ("synchronous", "cache_size", "threads")
        ]
        assert pragmas == [2, -2000, 0]
        assert_dictionary_counts(path)
        assert_trigrams_indexed(path)
        stored = store.search("cc1", RecordingQuery(), limit=1000)
        assert_searches_match_reference(store, stored)

        with store.bulk_load() as deferred:  # not empty any more: nothing is dropped
            assert not deferred
            assert set(DERIVED) <= structures(path)
    finally:
        store.close()


# A load killed halfway (argv: a database URL, a file of recordings).
KILLED_LOAD = """
import json, os, signal, sys
from callrec.store import open_store
store = open_store(sys.argv[1])
docs = [json.loads(line) for line in open(sys.argv[2], encoding="utf-8")]
with store.bulk_load():
    store.upsert("cc1", docs)
    os.kill(os.getpid(), signal.SIGKILL)
"""


def killed_load(tmp_path: Path, script: str = KILLED_LOAD, count: int = 300) -> Path:
    """A database whose bulk load of ``count`` demo recordings by ``script`` was killed
    before its builds."""
    path = tmp_path / "killed.db"
    source = tmp_path / "sample.jsonl"
    demo_jsonl(source, count, seed=5)
    done = subprocess.run([sys.executable, "-c", script, f"sqlite:///{path}", str(source)])
    assert done.returncode == -signal.SIGKILL
    # The ids' index was built by the first merge, if any (an upsert's documents merge).
    assert not (set(DERIVED) - {IDS}) & structures(path)
    return path


def test_a_killed_bulk_load_gets_its_indexes_back(tmp_path: Path) -> None:
    path = killed_load(tmp_path)

    reopened = SQLiteStore(path)
    try:
        assert set(DERIVED) <= structures(path)
        stored = reopened.search("cc1", RecordingQuery(), limit=1000)
        assert len(stored) == 300
        assert_dictionary_counts(path)
        assert_trigrams_indexed(path)
        assert_searches_match_reference(reopened, stored)
        # The trigram index and the dictionary follow later writes again.
        reopened.upsert("cc1", [local_recording("late-1", callerPhoneNumber="+1 987 654 3210")])
        [late] = reopened.search("cc1", parse_query({"callerPhoneNumber": "*76543*"}), limit=5)
        assert late["id"] == "late-1"
        assert_dictionary_counts(path)
    finally:
        reopened.close()


def agent(rec_id: str, user: str, start: str = "2013-05-17T19:45:32.000+0000") -> Stored:
    history = [{"event": "Joined", "contact": {"type": "Agent", "userName": user}}]
    return to_store(None, local_recording(rec_id, eventHistory=history, startTime=start))


def test_a_recording_changed_in_a_bulk_load_replaces_its_names_by_their_keys(
    tmp_path: Path,
) -> None:
    """The names' index by recording is dropped in a bulk load; a recording that comes again,
    changed, has its entries deleted by their whole key, not by reading every entry."""
    path = tmp_path / "repeat.db"
    store = SQLiteStore(path)
    statements: list[str] = []
    try:
        with store.bulk_load() as deferred:
            assert deferred
            assert store.load("cc1", [agent("a", "ann.first"), agent("b", "bob")]) == [None] * 2
            # A read on the loading thread sees what is committed, and never waits for it.
            assert store.search("cc1", RecordingQuery(), limit=5) == []
            store._writer.set_trace_callback(statements.append)
            # "a" again, another agent, an earlier start: merged (when the load builds the
            # index of ids, which it has dropped), its start widened.
            earlier = agent("a", "zed.second", start="2013-05-17T19:00:00.000+0000")
            assert store.load("cc1", [earlier]) == [None]
        store._writer.set_trace_callback(None)
        users = {
            name: [d["id"] for d in store.search("cc1", parse_query({"userName": name}), limit=9)]
            for name in ("ann.first", "zed.second", "bob")
        }
        assert users == {"ann.first": ["a"], "zed.second": ["a"], "bob": ["b"]}
        assert_dictionary_counts(path)
    finally:
        store.close()
    # "a"'s entries at its first start (pk 1), and those of its second row (pk 3), merged
    # into the first and deleted.
    deletes = sorted({s for s in statements if s.startswith("DELETE FROM recording_names")})
    assert [re.findall(r"pk = (\d+)", delete) for delete in deletes] == [["1"], ["3"]]
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("DROP INDEX recording_names_by_pk")  # as during the load
        for delete in deletes:
            plan = conn.execute(f"EXPLAIN QUERY PLAN {delete}").fetchall()
            assert "PRIMARY KEY" in str(plan), plan  # each entry found by its key, no scan
        entries = conn.execute(
            "SELECT n.pk, n.name, n.start_ms = r.start_ms FROM recording_names n"
            " JOIN recordings r ON r.pk = n.pk ORDER BY n.pk, n.name"
        ).fetchall()
    # Each recording's entries once, at its start as stored: none left at "a"'s old start.
    a_names = sorted({*agent("a", "ann.first").keys.names, *earlier.keys.names})
    b_names = sorted(agent("b", "bob").keys.names)
    assert entries == [(1, name, 1) for name in a_names] + [(2, name, 1) for name in b_names]


def test_builds_commit_each_trigger_with_what_it_keeps() -> None:
    steps = build_steps(dict(DERIVED))
    ddl = [statement for step in steps for statement in step if statement in DERIVED.values()]
    assert sorted(ddl) == sorted(DERIVED.values())  # each structure built once
    for step in steps:
        if kind(step[0]) == "INDEX":
            assert len(step) == 1
            continue
        triggers = [statement for statement in step if statement.startswith("CREATE TRIGGER")]
        assert step[: len(triggers)] == triggers
        [kept] = {re.findall(r"BEGIN (?:INSERT INTO|UPDATE) (\w+)", t)[0] for t in triggers}
        # The table the triggers keep is filled in the same transaction.
        fills = step[len(triggers) :]
        assert any(f.startswith(f"INSERT INTO {kept} (") and "SELECT" in f for f in fills)
    # A trigger missing alone is built again with its table's filling.
    [step] = build_steps({"caller_fts_update": DERIVED["caller_fts_update"]})
    assert step[0] == DERIVED["caller_fts_update"]
    assert "delete-all" in step[1]


def test_builds_killed_between_steps_are_finished_at_the_next_start(tmp_path: Path) -> None:
    path = killed_load(tmp_path)
    # The indexes and the callers' trigrams were built before the process was killed.
    steps = build_steps({n: d for n, d in DERIVED.items() if n not in structures(path)})
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        for step in steps[:-2]:
            conn.execute("BEGIN IMMEDIATE")
            for statement in step:
                conn.execute(statement)
            conn.execute("COMMIT")
    assert {"caller_fts_insert", "dialed_fts_insert"} & structures(path) == {"caller_fts_insert"}

    reopened = SQLiteStore(path)
    try:
        assert set(DERIVED) <= structures(path)
        assert_dictionary_counts(path)
        assert_trigrams_indexed(path)
        assert_searches_match_reference(
            reopened, reopened.search("cc1", RecordingQuery(), limit=1000)
        )
    finally:
        reopened.close()


# ------------------------------------------------------------------ SQLite loads of prepared items


def rows(path: Path) -> list[tuple[int, str, int]]:
    """(pk, id, name entries) of every stored recording, in pk order."""
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute(
            "SELECT r.pk, r.id, (SELECT count(*) FROM recording_names n WHERE n.pk = r.pk)"
            " FROM recordings r ORDER BY r.pk"
        ).fetchall()


def events(rec_id: str, *names: str) -> Stored:
    """A recording prepared as an import's workers do, with these events."""
    contact = local_recording()["eventHistory"][0]["contact"]
    history = [{"event": name, "contact": contact} for name in names]
    return to_store(None, local_recording(rec_id, eventHistory=history))


def test_loads_insert_new_recordings_directly_and_merge_stored_or_repeated_ones(
    tmp_path: Path,
) -> None:
    path = tmp_path / "load.db"
    store = SQLiteStore(path)
    try:
        assert store.load("cc1", [events("a", "Joined"), events("b", "Joined")]) == [None] * 2
        # "a" is stored already: the batch is undone and merged, as a whole.
        assert store.load("cc1", [events("c", "Joined"), events("a", "Left")]) == [None] * 2
        assert not store._all_new  # so the next batch is merged without trying first
        assert store.load("cc1", [events("d", "Joined")]) == [None]
        assert store._all_new
        # Twice in one batch: merged with itself.
        assert store.load("cc1", [events("e", "Joined"), events("e", "Left")]) == [None] * 2
        merged = {d["id"]: [e["event"] for e in d["eventHistory"]] for d in everything_in(store)}
    finally:
        store.close()
    assert merged == {
        "a": ["Joined", "Left"],
        "b": ["Joined"],
        "c": ["Joined"],
        "d": ["Joined"],
        "e": ["Joined", "Left"],
    }
    # Pks as SQLite would give them, none lost to an undone batch; each recording's names
    # entered once.
    names = len(events("x", "Joined").keys.names)
    assert names > 1
    assert rows(path) == [(pk, rec_id, names) for pk, rec_id in enumerate("abcde", 1)]


def open_structures(store: SQLiteStore) -> set[str]:
    """As ``structures``, seen by the store's writer (in a load's open transaction)."""
    found = store._writer.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
    return {name for (name,) in found}


def history(store: RecordingStore) -> dict[str, list[str]]:
    return {d["id"]: [e["event"] for e in d["eventHistory"]] for d in everything_in(store)}


REPEATS = [
    [events("a", "Joined"), events("b", "Joined")],
    [events("c", "Joined"), events("a", "Left"), events("a", "Left", "Dropped")],
    [events("e", "Joined"), events("e", "Left"), events("b", "Joined"), events("c", "Joined")],
]
MERGED = {
    "a": ["Joined", "Left", "Dropped"],
    "b": ["Joined"],
    "c": ["Joined"],
    "e": ["Joined", "Left"],
}


def assert_loaded_alike_line_by_line(store: RecordingStore, live: RecordingStore) -> None:
    """The ``REPEATS`` batches loaded into ``live``, a store that is not empty (no index
    dropped, merged line by line), make the documents ``store`` holds; ``live`` is closed."""
    try:
        live.load("cc0", [events("z", "Joined")])
        with live.bulk_load() as deferred:
            assert not deferred
            for batch in REPEATS:
                live.load("cc1", batch)
        assert everything_in(live) == everything_in(store)
    finally:
        live.close()


def test_a_load_into_an_empty_store_merges_its_repeats_when_it_indexes_the_ids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A load into an empty store drops the index of ids too: a recording that comes again
    is inserted again, and its rows are merged in file order when the index is built at the
    end, into what a load with the index makes of it line by line."""
    path = tmp_path / "repeats.db"
    store = SQLiteStore(path)
    try:
        with store.bulk_load() as deferred:
            assert deferred
            for batch in REPEATS:
                assert store.load("cc1", batch) == [None] * len(batch)
            # Seen in the load's open transaction: no index of ids, a row each time, for now.
            assert IDS not in open_structures(store)
            assert store._writer.execute("SELECT count(*) FROM recordings").fetchone()[0] == 9
            written: list[str] = []
            write_rows = sqliterows.write_rows
            monkeypatch.setattr(
                sqliterows,
                "write_rows",
                lambda conn, ccid, rows, *args: (
                    written.extend(r.keys.id for r in rows.values())
                    or write_rows(conn, ccid, rows, *args)
                ),
            )
        monkeypatch.undo()
        # a and e merged; b and c, loaded again as they were, only have their repeats deleted.
        assert sorted(written) == ["a", "e"]
        assert set(DERIVED) <= structures(path)
        assert history(store) == MERGED
        # Each merged into its first row (its pk), the others deleted with their names.
        names = len(events("x", "Joined").keys.names)
        assert rows(path) == [(1, "a", names), (2, "b", names), (3, "c", names), (6, "e", names)]
        assert_dictionary_counts(path)
        assert_trigrams_indexed(path)
        assert_loaded_alike_line_by_line(store, SQLiteStore(tmp_path / "live.db"))
        # The index keeps the ids unique again, and a recording loaded again merges.
        with pytest.raises(sqlite3.IntegrityError, match=r"recordings\.ccid, recordings\.id"):
            store._writer.execute(
                "INSERT INTO recordings (ccid, id, start_ms, caller, dialed, doc)"
                " VALUES ('cc1', 'a', 0, '', '', x'')"
            )
        assert store.load("cc1", [events("c", "Left")]) == [None]
        assert history(store)["c"] == ["Joined", "Left"]
        assert len(rows(path)) == 4
    finally:
        store.close()


def test_a_load_that_needs_a_merge_indexes_the_ids_first(tmp_path: Path) -> None:
    """A recording with no start of its own merges with the stored one, looked up by id: a
    load that dropped the index of ids builds it then (merging the repeats so far), rather
    than reading the whole table for each batch."""
    path = tmp_path / "merge.db"
    store = SQLiteStore(path)
    statements: list[str] = []
    try:
        with store.bulk_load():
            store.load("cc1", [events("a", "Joined"), events("b", "Joined"), events("a", "Left")])
            assert IDS not in open_structures(store)
            later = dict(events("b", "Left").doc)
            later.pop("startTime")
            store._writer.set_trace_callback(statements.append)
            assert store.load("cc1", [later, events("c", "Joined")]) == [None] * 2
            store._writer.set_trace_callback(None)
            assert IDS in open_structures(store)  # built in the load, not at its end
            assert not (set(DERIVED) - {IDS}) & open_structures(store)
        assert history(store) == {"a": ["Joined", "Left"], "b": ["Joined", "Left"], "c": ["Joined"]}
        assert [rec_id for _, rec_id, _ in rows(path)] == ["a", "b", "c"]
    finally:
        store.close()
    lookups = [s for s in statements if s.startswith("SELECT id, pk, doc FROM recordings")]
    assert lookups
    with closing(sqlite3.connect(path)) as conn:
        for lookup in lookups:
            plan = str(conn.execute(f"EXPLAIN QUERY PLAN {lookup}").fetchall())
            assert IDS in plan, plan


# Batches loaded into an empty store, a recording among them twice, and the process killed
# before the end of the load (argv: a database URL, a file of recordings).
KILLED_REPEATS = """
import json, os, signal, sys
from callrec.model import to_store
from callrec.store import open_store, sqlite
sqlite.LOAD_COMMIT = 2
store = open_store(sys.argv[1])
docs = [json.loads(line) for line in open(sys.argv[2], encoding="utf-8")]
again = dict(docs[0], eventHistory=[{"event": "Left", "contact": {"type": "Agent"}}])
with store.bulk_load():
    store.load("cc1", [to_store(None, d) for d in docs[:2]])
    store.load("cc1", [to_store(None, again), to_store(None, docs[2])])
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_load_with_repeats_has_them_merged_at_the_next_start(tmp_path: Path) -> None:
    path = killed_load(tmp_path, KILLED_REPEATS, 3)
    assert IDS not in structures(path)
    first, *_ = [json.loads(line) for line in (tmp_path / "sample.jsonl").read_text().splitlines()]
    assert len(rows(path)) == 4

    reopened = SQLiteStore(path)
    try:
        assert set(DERIVED) <= structures(path)
        assert len(rows(path)) == 3
        [merged] = [d for d in everything_in(reopened) if d["id"] == first["id"]]
        assert merged["eventHistory"][-1]["event"] == "Left"
        assert merged["eventHistory"][:-1] == first["eventHistory"]
        assert_dictionary_counts(path)
        assert_searches_match_reference(reopened, everything_in(reopened))
    finally:
        reopened.close()


def test_a_file_loaded_again_writes_only_what_it_changes(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An import run again over a file it loaded (after a kill, say) finds each recording
    stored in the very form it prepared: nothing to merge, nothing written (a merge of
    600,000 such recordings took 183 s, against 28 s for their first load)."""
    written: list[str] = []

    def sqlite_rows(conn: Any, ccid: str, rows: dict[int, Stored], *args: Any, **kw: Any) -> None:
        written.extend(row.keys.id for row in rows.values())
        write_rows(conn, ccid, rows, *args, **kw)

    def postgres_rows(conn: Any, ccid: str, rows: list[Stored], stored: Any) -> None:
        written.extend(row.keys.id for row in rows)
        write(conn, ccid, rows, stored)

    write_rows = sqliterows.write_rows
    monkeypatch.setattr(sqliterows, "write_rows", sqlite_rows)
    write = pgrows.write_rows
    monkeypatch.setattr(pgrows, "write_rows", postgres_rows)
    store = open_store(database_url)
    try:
        first = [events("a", "Joined"), events("b", "Joined"), events("c", "Joined")]
        assert store.load("cc1", first) == [None] * 3
        assert sorted(written) == ["a", "b", "c"]
        written.clear()
        store.upsert("cc1", [events("b", "Left").doc])  # b changed since it was loaded
        written.clear()
        again = [events("a", "Joined"), events("b", "Joined"), events("c", "Joined")]
        more = [events("d", "Joined"), events("c", "Left"), events("c", "Joined")]
        assert store.load("cc1", [*again, *more]) == [None] * 6
        # b is merged (it holds "Left" now, which the file does not), d is new, c changes
        # in the batch and is merged with itself after; a is left as it was.
        assert sorted(written) == ["b", "c", "d"]
        history = {d["id"]: [e["event"] for e in d["eventHistory"]] for d in everything_in(store)}
    finally:
        store.close()
    assert history == {
        "a": ["Joined"],
        "b": ["Joined", "Left"],
        "c": ["Joined", "Left"],
        "d": ["Joined"],
    }


def everything_in(store: RecordingStore) -> list[Document]:
    return store.search("cc1", RecordingQuery(), limit=1000)


def test_bulk_load_batches_share_transactions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_store, "LOAD_COMMIT", 3)
    path = tmp_path / "shared.db"
    store = SQLiteStore(path)

    def committed() -> list[str]:
        return [rec_id for _, rec_id, _ in rows(path)]

    def broken(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk gone")

    try:
        with store.bulk_load():
            store.load("cc1", [events("a", "Joined"), events("b", "Joined")])
            assert committed() == []  # the transaction is open
            store.load("cc1", [events("c", "Joined")])
            assert committed() == ["a", "b", "c"]  # three: committed
            store.load("cc1", [events("d", "Joined")])
            with monkeypatch.context() as patch:
                patch.setattr(sqliterows, "write_rows", broken)
                with pytest.raises(OSError, match="disk gone"):
                    store.load("cc1", [events("e", "Joined")])
            assert committed() == ["a", "b", "c"]
            # A write between batches commits them first (and does not wait for itself).
            store.upsert("cc1", [local_recording("f")])
            assert committed() == ["a", "b", "c", "d", "f"]
            store.load("cc1", [events("g", "Joined")])
        # The end of the load commits the rest; the failed batch alone is undone.
        assert committed() == ["a", "b", "c", "d", "f", "g"]
        assert store._uncommitted is None
        store.upsert("cc1", [local_recording("h")])  # the write lock is free
        assert committed()[-1] == "h"
        with store.bulk_load() as deferred:  # into a store that is not empty
            assert not deferred
            store.load("cc1", [events("i", "Joined")])
            assert committed()[-1] == "i"  # a live database's writers wait for one batch
    finally:
        store.close()


def test_import_collects_garbage_once_a_batch(
    services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "demo.jsonl"
    demo_jsonl(source, 300, seed=3)
    monkeypatch.setattr(importer, "CHUNK", 50_000)
    monkeypatch.setattr(services.store, "load_size", 100)
    automatic: list[bool] = []
    collections: list[int] = []
    monkeypatch.setattr(importer.gc, "collect", lambda *a: collections.append(1) or 0)
    import_file(
        services,
        source,
        "cc1",
        jobs=0,
        on_error=lambda n, m: None,
        on_progress=lambda size: automatic.append(gc.isenabled()),
    )
    assert automatic
    assert not any(automatic)  # no automatic collection during the import
    assert gc.isenabled()  # and back afterwards
    assert len(collections) == len(automatic)  # one after each batch


# Batches loaded into an empty store, the process killed with the second transaction open
# (argv: a database URL, a file of recordings).
KILLED_LOADS = """
import json, os, signal, sys
from callrec.model import to_store
from callrec.store import open_store, sqlite
sqlite.LOAD_COMMIT = 2
store = open_store(sys.argv[1])
docs = [to_store(None, json.loads(line)) for line in open(sys.argv[2], encoding="utf-8")]
with store.bulk_load():
    store.load("cc1", docs[:2])  # two: committed
    store.load("cc1", docs[2:3])  # in the open transaction
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_load_keeps_what_it_committed(tmp_path: Path) -> None:
    path = killed_load(tmp_path, KILLED_LOADS, 3)

    lines = (tmp_path / "sample.jsonl").read_text().splitlines()
    first_two = [json.loads(line)["id"] for line in lines[:2]]
    reopened = SQLiteStore(path)
    try:
        assert sorted(d["id"] for d in everything_in(reopened)) == sorted(first_two)
        [(check,)] = reopened._writer.execute("PRAGMA integrity_check").fetchall()
        assert check == "ok"
    finally:
        reopened.close()
