"""Recordings' JSON compressed by both stores (``callrec/doccodec``), and the schema 7 upgrades
that left the documents already stored readable (PostgreSQL's also turned text into bytes)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import orjson
import psycopg
import pytest
import zstandard

from callrec import doccodec
from callrec.demo import demo_jsonl
from callrec.doccodec import VOCABULARY, pack, unpack
from callrec.model import to_store
from callrec.query import parse_query
from callrec.store import open_store, pgrows, sqliterows
from callrec.store import pgschema as pg_schema
from callrec.store import sqliteschema as sqlite_schema
from conftest import local_recording

EXAMPLES = Path(__file__).resolve().parents[2] / "shared" / "examples"


def demo_blobs(tmp_path: Path, count: int = 200) -> list[bytes]:
    source = tmp_path / "demo.jsonl"
    demo_jsonl(source, count, seed=3, media=True)
    return [to_store(None, orjson.loads(line)).blob for line in source.read_bytes().splitlines()]


def test_documents_come_back_byte_for_byte(tmp_path: Path) -> None:
    blobs = demo_blobs(tmp_path)
    blobs += [orjson.dumps(json.loads(p.read_text())) for p in sorted(EXAMPLES.glob("*.json"))]
    blobs += [b"{}", orjson.dumps({"id": "x", "note": "\u00e9\u4e2d\U0001f600" * 300})]
    for blob in blobs:
        stored = pack(blob)
        assert stored[:1] == b"\x01"
        assert unpack(stored) == blob


def test_recordings_shrink_to_about_a_fifth(tmp_path: Path) -> None:
    blobs = demo_blobs(tmp_path)
    ratio = sum(len(pack(b)) for b in blobs) / sum(len(b) for b in blobs)
    assert ratio < 0.3, ratio


def test_documents_compressed_at_the_earlier_level_read_as_they_were(tmp_path: Path) -> None:
    """Until 2026-12-07 documents were compressed at level 3 (now -1): the same frames, the
    same dictionary, read by the same decoder."""
    earlier = zstandard.ZstdCompressor(
        level=3, dict_data=doccodec._DICTIONARY, write_checksum=False
    )
    for blob in demo_blobs(tmp_path, 50):
        stored = b"\x01" + earlier.compress(blob)
        assert stored != pack(blob)  # a different frame...
        assert unpack(stored) == blob  # ...read back alike


def test_plain_json_stored_before_compression_reads_as_it_is() -> None:
    blob = orjson.dumps(local_recording("old-1"))
    assert unpack(blob) == blob


def test_the_vocabulary_never_changes() -> None:
    """Documents compressed against it cannot be read without it: a better vocabulary needs a
    tag of its own, and this one stays for reading."""
    digest = hashlib.sha256(VOCABULARY).hexdigest()
    assert digest == "6d04417465f177193fe11bae38a0c5d44c5b8aff96e9e3ce4b79418a48b681f9"


def stored_docs(url: str) -> dict[str, bytes]:
    with psycopg.connect(url) as conn:
        return {i: bytes(d) for i, d in conn.execute("SELECT id, document FROM recordings")}


def test_postgres_stores_documents_compressed(pg_url: str) -> None:
    store = open_store(pg_url)
    try:
        doc = local_recording("r1", callerPhoneNumber="+16504668888")
        [saved] = store.upsert("cc1", [doc])
        raw = stored_docs(pg_url)["r1"]
        assert raw[:1] == b"\x01"
        assert len(raw) < len(orjson.dumps(saved)) / 2
        assert store.get("cc1", "r1") == saved
    finally:
        store.close()


def test_text_documents_of_schema_6_are_read_after_the_upgrade(pg_url: str) -> None:
    old = to_store(None, local_recording("old-1", callerPhoneNumber="+16504668888"))
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert pg_schema.migrate(conn, target=6) == 6
        conn.execute(
            "INSERT INTO recordings (ccid, id, region, start_ms, stop_ms, caller, dialed,"
            " caller_rev, dialed_rev, doc) VALUES ('cc1', %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (*pgrows.columns("cc1", old)[1:-1], old.blob.decode()),
        )
    store = open_store(pg_url)
    try:
        assert store.schema_version == pg_schema.SCHEMA_VERSION
        assert stored_docs(pg_url)["old-1"] == old.blob  # left as it was, now as bytes
        store.upsert("cc1", [local_recording("new-1", callerPhoneNumber="+16504668889")])
        assert stored_docs(pg_url)["new-1"][:1] == b"\x01"
        found = store.search("cc1", parse_query({"callerPhoneNumber": "*66*"}), limit=10)
        assert [d["id"] for d in found] == ["new-1", "old-1"]  # same start: by id
        assert store.get("cc1", "old-1") == old.doc
        # A node of schema 6 still running fails on documents rather than write text.
        with psycopg.connect(pg_url) as conn, pytest.raises(psycopg.errors.UndefinedColumn):
            conn.execute("COPY recordings (ccid, id, doc) FROM STDIN")
        # A merge into the old recording writes it back compressed.
        store.upsert("cc1", [{"id": "old-1", "region": "usw1", "callType": "Inbound"}])
        assert stored_docs(pg_url)["old-1"][:1] == b"\x01"
        assert store.get("cc1", "old-1") == {**old.doc, "callType": "Inbound"}
    finally:
        store.close()


def sqlite_docs(path: Path) -> dict[str, bytes]:
    with sqlite3.connect(path) as conn:
        return dict(conn.execute("SELECT id, doc FROM recordings"))


def test_sqlite_documents_of_schema_6_are_read_after_the_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "callrec.db"
    old = to_store(None, local_recording("old-1", callerPhoneNumber="+16504668888"))
    conn = sqlite3.connect(path, isolation_level=None)
    assert sqlite_schema.migrate(conn, target=6) == 6
    conn.execute(
        "INSERT INTO recordings (ccid, id, region, start_ms, stop_ms, caller, dialed,"
        " caller_rev, dialed_rev, doc) VALUES ('cc1', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (old.keys.id, *sqliterows.columns(old)[:-1], old.blob),
    )
    conn.close()
    store = open_store(f"sqlite:///{path}")
    try:
        assert store.schema_version == sqlite_schema.SCHEMA_VERSION >= 7
        assert sqlite_docs(path)["old-1"] == old.blob  # left as it was
        [new] = store.upsert("cc1", [local_recording("new-1", callerPhoneNumber="+16504668889")])
        raw = sqlite_docs(path)["new-1"]
        assert raw[:1] == b"\x01"
        assert len(raw) < len(orjson.dumps(new)) / 2
        found = store.search("cc1", parse_query({"callerPhoneNumber": "*66*"}), limit=10)
        assert found == [new, old.doc]  # same start: by id
        assert store.get("cc1", "old-1") == old.doc
        assert [doc["id"] for _, doc in store.iter_recordings("cc1")] == ["old-1", "new-1"]
        # A merge into the old recording writes it back compressed.
        store.upsert("cc1", [{"id": "old-1", "region": "usw1", "callType": "Inbound"}])
        assert sqlite_docs(path)["old-1"][:1] == b"\x01"
        assert store.get("cc1", "old-1") == {**old.doc, "callType": "Inbound"}
        assert store.delete("cc1", "new-1") == new
    finally:
        store.close()


def test_sqlite_schema_7_is_a_number_that_older_callrecs_refuse(tmp_path: Path) -> None:
    """Schema 7 changes no table: its number is what keeps an older callrec, which could not
    read compressed documents, from opening the database (a newer database is refused:
    ``test_migrations``)."""
    path = tmp_path / "callrec.db"
    open_store(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] >= 7
    assert [number for number, _, statements in sqlite_schema.MIGRATIONS if not statements] == [7]
