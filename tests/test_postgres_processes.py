"""Several ``callrec serve`` processes over one PostgreSQL database, and PostgreSQL faults.

What docs/deployment.md promises, checked on real processes:

* two nodes on one database (and one shared media directory) are one service: what one
  acknowledges the other reads at once; accounts, CSRF tokens and uploaded media are shared;
* concurrent merges of one recording through both nodes lose no media file and no event,
  and concurrent creation of one new id neither fails nor duplicates it;
* an unreachable database stops ``serve`` and ``migrate`` quickly with one line on stderr;
  a database lost while serving turns requests into bounded GWS errors, and service resumes
  by itself when the database returns;
* the schema fits a distributed PostgreSQL: every primary and unique key of the tables that
  would be distributed includes ``ccid`` (read from the live catalog).
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import orjson
import psycopg
import pytest

from callrec.demo import demo_audio
from callrec.store import open_store
from conftest import PASSWORD, local_recording
from pgserver import (
    PostgresServer,
    ThrowawayCluster,
    fresh_schema,
    postgres_required,
    throwaway_server,
    throwaway_unavailable_reason,
)
from server import RunningServer, run_cli, running_server

pytestmark = pytest.mark.e2e

CC = "cc1"
OPS = f"/api/v2/ops/contact-centers/{CC}/recordings"
DB_TIMEOUT = 2.0  # CALLREC_DATABASE_TIMEOUT of the fault tests
HANG = 3 * DB_TIMEOUT  # any request may take this long while the database is down, no more
OUTAGE = 20.0  # how long the database stays down in the outage test
RECOVERY = 3 * DB_TIMEOUT  # once the database is back, service resumes within this
WAIT = 60.0  # bound on waits for worker threads; never reached when things work
DB_PASSWORD = "Pg-Pa55word-Never-Shown"  # put into database URLs; must never be echoed


def with_password(url: str, password: str = DB_PASSWORD) -> str:
    """``url`` with ``password`` for its user (trust authentication ignores it)."""
    parts = urlsplit(url)
    user = parts.username or "postgres"
    host = parts.hostname or "127.0.0.1"
    netloc = f"{user}:{password}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def add_user(url: str, data_dir: Path, name: str, *options: str, password: str = PASSWORD) -> None:
    done = run_cli(
        data_dir,
        "users",
        "add",
        name,
        *options,
        "--password-stdin",
        input=f"{password}\n",
        env={"CALLREC_DATABASE_URL": url},
    )
    assert done.returncode == 0, done.stderr


def http(server: RunningServer, user: str = "recorder", password: str = PASSWORD) -> httpx.Client:
    return httpx.Client(base_url=server.url, auth=(user, password), timeout=30.0)


def event(user_name: str, second: int) -> dict[str, Any]:
    minute, sec = divmod(second, 60)
    return {
        "occurredAt": f"2013-05-17T20:{minute:02d}:{sec:02d}.000+0000",
        "event": "Joined",
        "contact": {"type": "Agent", "userName": user_name},
    }


def media(media_id: str) -> dict[str, Any]:
    return {"mediaId": media_id, "type": "audio/wav"}


def run_threads(count: int, work: Callable[[int, threading.Barrier], None]) -> None:
    """Run ``work(t, barrier)`` for t in 0..count-1 in ``count`` threads that may meet at
    ``barrier``; re-raise the first failure (which breaks the barrier for the others)."""
    barrier = threading.Barrier(count)

    def guarded(t: int) -> None:
        try:
            work(t, barrier)
        except BaseException:
            barrier.abort()
            raise

    with ThreadPoolExecutor(count) as pool:
        futures = [pool.submit(guarded, t) for t in range(count)]
        for future in futures:
            future.result(timeout=WAIT)


# --------------------------------------------------------------------------- two nodes


@dataclass
class Pair:
    """Two ``callrec serve`` nodes on one database schema and one media directory."""

    a: RunningServer
    b: RunningServer
    url: str
    env: dict[str, str]
    tmp: Path
    csrf: str

    @property
    def nodes(self) -> tuple[RunningServer, RunningServer]:
        return self.a, self.b

    def ops(self, node: RunningServer) -> httpx.Client:
        client = http(node)
        client.headers["X-CSRF-TOKEN"] = self.csrf
        return client

    def cli(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return run_cli(self.tmp / "cli", *args, input=input, env=self.env)


@pytest.fixture(scope="module")
def pair(pg_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    tmp = tmp_path_factory.mktemp("two-nodes")
    with fresh_schema(pg_server) as url, ExitStack() as stack:
        env = {
            "CALLREC_DATABASE_URL": url,
            "CALLREC_MEDIA_DIR": str(tmp / "shared-media"),
            "CALLREC_CSRF": "true",
            "CALLREC_LOG_LEVEL": "warning",
        }
        add_user(url, tmp / "cli", "recorder", "--ops")
        add_user(url, tmp / "cli", "alice", "--role", "admin", "--contact-center", CC)
        a = stack.enter_context(running_server(tmp / "a", env=env))
        b = stack.enter_context(running_server(tmp / "b", env=env))
        with http(a) as client:
            me = client.get("/api/v2/me")
        assert me.status_code == 200, me.text
        yield Pair(a, b, url, env, tmp, me.headers["X-CSRF-TOKEN"])


def test_the_nodes_keep_nothing_in_their_data_dirs(pair: Pair) -> None:
    # Nothing of the service lives in the nodes' data directories: nothing was written there.
    for node in pair.nodes:
        assert node.process.poll() is None
    assert not (pair.tmp / "a").exists()
    assert not (pair.tmp / "b").exists()


def test_a_write_acknowledged_by_one_node_is_read_at_once_by_the_other(pair: Pair) -> None:
    clients = {
        node.url: (pair.ops(node), http(node, "alice")) for node in pair.nodes
    }  # keep-alive connections, as a load balancer would have
    try:
        for n in range(30):
            writer, reader = (pair.a, pair.b) if n % 2 == 0 else (pair.b, pair.a)
            ops_w, _ = clients[writer.url]
            ops_r, alice_r = clients[reader.url]
            rec_id = f"seen-{n}"
            caller = f"+1 (650) 700-{n:04d}"
            posted = ops_w.post(OPS, json=local_recording(rec_id, callerPhoneNumber=caller))
            assert (posted.status_code, posted.json()) == (200, {"statusCode": 0})

            got = alice_r.get(f"/api/v2/recordings/{rec_id}")
            assert got.status_code == 200, (n, got.text)
            assert got.json()["recording"]["callerPhoneNumber"] == caller
            found = alice_r.get("/api/v2/recordings", params={"callerPhoneNumber": caller})
            assert [r["id"] for r in found.json()["recordings"]] == [rec_id]

            # A merge through the reader is seen by the writer at once, too.
            merged = ops_r.post(
                OPS, json={"id": rec_id, "region": "usw1", "eventHistory": [event("late", n)]}
            )
            assert merged.status_code == 200, merged.text
            stored = ops_w.get(f"{OPS}/{rec_id}").json()["recording"]
            assert event("late", n) in stored["eventHistory"]

            if n % 3 == 0:
                assert ops_w.delete(f"{OPS}/{rec_id}").status_code == 200
                gone = alice_r.get(f"/api/v2/recordings/{rec_id}")
                assert (gone.status_code, gone.json()["statusCode"]) == (404, 6)
    finally:
        for ops, alice in clients.values():
            ops.close()
            alice.close()


def test_accounts_managed_with_the_cli_are_seen_by_both_nodes(pair: Pair) -> None:
    def me_status(node: RunningServer, password: str) -> int:
        with http(node, "carol", password) as client:
            return client.get("/api/v2/me").status_code

    for node in pair.nodes:
        assert me_status(node, PASSWORD) == 401
    added = pair.cli(
        "users", "add", "carol", "--role", "admin", "--contact-center", CC,
        "--password-stdin", input=f"{PASSWORD}\n",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    for node in pair.nodes:
        with http(node, "carol") as carol:
            me = carol.get("/api/v2/me")
        assert me.status_code == 200, me.text
        assert me.json()["user"]["contactCenterId"] == CC

    changed = pair.cli("users", "passwd", "carol", "--password-stdin", input="n3w-pw\n")
    assert changed.returncode == 0, changed.stderr
    for node in pair.nodes:  # both nodes remembered the old password; neither accepts it now
        assert me_status(node, PASSWORD) == 401
        assert me_status(node, "n3w-pw") == 200

    removed = pair.cli("users", "remove", "carol")
    assert removed.returncode == 0, removed.stderr
    for node in pair.nodes:
        assert me_status(node, "n3w-pw") == 401


def test_a_csrf_token_handed_out_by_one_node_is_accepted_by_the_other(pair: Pair) -> None:
    with http(pair.b) as client:
        assert client.get("/api/v2/me").headers["X-CSRF-TOKEN"] == pair.csrf
        body = local_recording("csrf-1")
        refused = client.post(OPS, json=body)
        assert (refused.status_code, refused.json()["statusCode"]) == (403, 3)
        wrong = client.post(OPS, json=body, headers={"X-CSRF-TOKEN": "0" * 64})
        assert wrong.status_code == 403
    for node in pair.nodes:
        with pair.ops(node) as ops:
            assert ops.post(OPS, json=body).status_code == 200


def test_media_uploaded_through_one_node_plays_from_the_other(pair: Pair) -> None:
    audio = demo_audio(1.0, seed=11)
    body = local_recording("shared-media-1", mediaFiles=[media("call.wav")])
    with pair.ops(pair.a) as ops_a, pair.ops(pair.b) as ops_b, http(pair.b, "alice") as alice:
        assert ops_a.post(OPS, json=body).status_code == 200
        put = ops_a.put(
            f"{OPS}/shared-media-1/media/call.wav",
            content=audio,
            headers={"Content-Type": "audio/wav"},
        )
        assert put.status_code == 200, put.text
        [file] = alice.get("/api/v2/recordings/shared-media-1").json()["recording"]["mediaFiles"]
        assert file["mediaUri"].startswith(pair.b.url)
        played = alice.get(file["mediaUri"])
        assert played.status_code == 200
        assert played.content == audio

        # Deleted through the other node: the recording and the file it owned are gone for both.
        assert ops_b.delete(f"{OPS}/shared-media-1").status_code == 200
        assert not (pair.tmp / "shared-media" / CC / "shared-media-1" / "call.wav").exists()
        with http(pair.a, "alice") as alice_a:
            gone = alice_a.get("/api/v2/recordings/shared-media-1/play/call.wav")
        assert (gone.status_code, gone.json()["statusCode"]) == (404, 6)


def test_concurrent_merges_through_both_nodes_lose_nothing(pair: Pair) -> None:
    rec_id = "merged-by-many"
    threads, posts = 16, 10  # 8 threads per node, every thread alternating between the nodes

    def work(t: int, barrier: threading.Barrier) -> None:
        clients = [pair.ops(node) for node in pair.nodes]
        try:
            barrier.wait(WAIT)
            for n in range(posts):
                body = local_recording(
                    rec_id,
                    mediaFiles=[media(f"part-{t}-{n}.wav")],
                    eventHistory=[event(f"agent-{t}-{n}", t * posts + n)],
                )
                answer = clients[(t + n) % 2].post(OPS, json=body)
                assert (answer.status_code, answer.json()) == (200, {"statusCode": 0}), (t, n)
        finally:
            for client in clients:
                client.close()

    run_threads(threads, work)

    expected_media = sorted(f"part-{t}-{n}.wav" for t in range(threads) for n in range(posts))
    expected_users = sorted(f"agent-{t}-{n}" for t in range(threads) for n in range(posts))
    seen = []
    for node in pair.nodes:
        with http(node, "alice") as alice:
            got = alice.get(f"/api/v2/recordings/{rec_id}")
            assert got.status_code == 200
            doc = got.json()["recording"]
            found = alice.get("/api/v2/recordings", params={"userName": "agent-15-9"})
            assert [r["id"] for r in found.json()["recordings"]] == [rec_id]
        assert sorted(m["mediaId"] for m in doc["mediaFiles"]) == expected_media
        assert sorted(e["contact"]["userName"] for e in doc["eventHistory"]) == expected_users
        seen.append(doc)
    # Both nodes return the same document (but for the play URLs, which name the node).
    assert seen[0] == orjson.loads(
        orjson.dumps(seen[1]).replace(pair.b.url.encode(), pair.a.url.encode())
    )


def test_concurrent_creation_of_one_new_id_through_both_nodes(pair: Pair) -> None:
    threads, rounds = 8, 10  # per round, 4 threads per node create the same new id at once

    def work(t: int, barrier: threading.Barrier) -> None:
        with pair.ops(pair.nodes[t % 2]) as ops:
            for k in range(rounds):
                body = local_recording(
                    f"born-{k}",
                    callerPhoneNumber=f"+1 (555) 010-{k:04d}",
                    mediaFiles=[media(f"leg-{t}.wav")],
                    eventHistory=[event(f"creator-{t}", t)],
                )
                barrier.wait(WAIT)
                answer = ops.post(OPS, json=body)
                assert (answer.status_code, answer.json()) == (200, {"statusCode": 0}), (t, k)

    run_threads(threads, work)

    for k in range(rounds):
        for node in pair.nodes:
            with http(node, "alice") as alice:
                found = alice.get(
                    "/api/v2/recordings", params={"callerPhoneNumber": f"1555010{k:04d}"}
                )
                assert found.status_code == 200
                [doc] = found.json()["recordings"]
            assert doc["id"] == f"born-{k}"
            assert sorted(m["mediaId"] for m in doc["mediaFiles"]) == sorted(
                f"leg-{t}.wav" for t in range(threads)
            )
            creators = sorted(e["contact"]["userName"] for e in doc["eventHistory"])
            assert creators == [f"creator-{t}" for t in range(threads)]


# --------------------------------------------------------------------------- faults


@pytest.fixture(scope="module")
def cluster() -> Iterator[ThrowawayCluster]:
    """A PostgreSQL cluster of this module's own, which the tests stop and start."""
    found = throwaway_server()
    if found is None:
        reason = throwaway_unavailable_reason() or "no throwaway PostgreSQL cluster"
        print(reason)
        if postgres_required():
            pytest.fail(reason)
        pytest.skip(reason)
    with found:
        yield found


@contextmanager
def silent_listener() -> Iterator[int]:
    """A port that accepts TCP connections and never says a word (a black-holed database)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield sock.getsockname()[1]


def assert_one_line_error(stderr: str, *secrets: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{stderr}"
    assert lines[0].startswith("error:"), lines[0]
    assert "Traceback" not in stderr
    for secret in secrets:
        assert secret not in stderr


def timed_runs(runs: list[tuple[list[str], Path, dict[str, str]]]) -> list[tuple[int, float, str]]:
    """Run ``callrec COMMAND`` for every (command, data dir, env) at once; (exit status,
    seconds taken, stderr) of each."""

    def run(command: list[str], data_dir: Path, env: dict[str, str]) -> tuple[int, float, str]:
        began = time.monotonic()
        done = run_cli(data_dir, *command, env=env, timeout=WAIT)
        return done.returncode, time.monotonic() - began, done.stderr

    with ThreadPoolExecutor(len(runs)) as pool:
        return list(pool.map(lambda r: run(*r), runs))


def test_an_unreachable_database_stops_serve_and_migrate_quickly(
    cluster: ThrowawayCluster, tmp_path: Path
) -> None:
    """Exit status 1 and one line on stderr, after about CALLREC_DATABASE_TIMEOUT: both when
    nothing listens (connection refused) and when something listens but never answers."""
    commands = [["serve", "--port", "0"], ["migrate"]]
    # What starting and failing costs without any database (an invalid setting stops each
    # command right after its imports), so that what remains is the wait for the database.
    invalid = {"CALLREC_PAGE_SIZE": "0"}
    baseline = timed_runs([(command, tmp_path / "baseline", invalid) for command in commands])
    assert [code for code, _, _ in baseline] == [2, 2], baseline
    cluster.stop()  # refused: nothing listens on its port any more
    try:
        with silent_listener() as port:
            silent = f"postgresql://callrec:{DB_PASSWORD}@127.0.0.1:{port}/callrec"
            urls = {"stopped": with_password(cluster.url), "silent": silent}
            env = {"CALLREC_DATABASE_TIMEOUT": str(DB_TIMEOUT)}
            runs = [
                (command, tmp_path / name, {**env, "CALLREC_DATABASE_URL": url})
                for name, url in urls.items()
                for command in commands
            ]
            outcomes = timed_runs(runs)
    finally:
        cluster.start()
    for (command, data_dir, _), (code, elapsed, stderr), (_, start_up, _) in zip(
        runs, outcomes, baseline * 2, strict=True
    ):
        where = f"{command[0]} against the {data_dir.name} database"
        assert code == 1, (where, stderr)
        # The wait for the database is bounded by CALLREC_DATABASE_TIMEOUT (a hang check).
        waited = elapsed - start_up
        assert waited < HANG, f"{where} took {elapsed:.1f} s, start-up {start_up:.1f} s"
        assert_one_line_error(stderr, DB_PASSWORD)


def test_a_database_that_refuses_says_why(pg_server: Any, tmp_path: Path) -> None:
    """A server that answers but refuses (no such database) is named as refusing, with its
    reason, not as silent; in one line, without the password."""
    parts = urlsplit(with_password(pg_server.url))
    url = urlunsplit(parts._replace(path="/callrec_no_such_database"))
    env = {"CALLREC_DATABASE_URL": url, "CALLREC_DATABASE_TIMEOUT": str(DB_TIMEOUT)}
    done = run_cli(tmp_path / "data", "migrate", env=env, timeout=WAIT)
    assert done.returncode == 1
    assert_one_line_error(done.stderr, DB_PASSWORD)
    assert 'refused the connection: database "callrec_no_such_database" does not exist' in (
        done.stderr
    )


def assert_gws_error(response: httpx.Response, http_status: int, url: str) -> None:
    assert response.status_code == http_status, response.text
    body = response.json()
    assert set(body) == {"statusCode", "statusMessage"}, body
    assert body["statusCode"] == 4
    parts = urlsplit(url)
    for leak in (
        DB_PASSWORD,
        str(parts.hostname),
        f"{parts.port}",
        "postgres",
        "psycopg",
        "SELECT",
        "recordings WHERE",
        "Traceback",
        "search_path",
    ):
        assert leak not in response.text, (leak, response.text)


def test_a_database_lost_while_serving_is_reported_and_then_recovered(
    cluster: ThrowawayCluster, tmp_path: Path
) -> None:
    """While the database is down every request fails within a bounded time with a GWS
    error; once it is back, the same process serves again within RECOVERY seconds, however
    long the outage lasted (a reconnection back-off that grows with the outage would leave
    the service down long after the database returned)."""
    cluster.start()
    data = tmp_path / "data"
    with fresh_schema(cluster) as schema_url:
        url = with_password(schema_url)
        add_user(url, data, "recorder", "--ops")
        add_user(url, data, "alice", "--role", "admin", "--contact-center", CC)
        env = {"CALLREC_DATABASE_URL": url, "CALLREC_DATABASE_TIMEOUT": str(DB_TIMEOUT)}
        with (
            running_server(data, env=env) as server,
            httpx.Client(base_url=server.url, timeout=HANG) as client,
        ):
            alice, ops = ("alice", PASSWORD), ("recorder", PASSWORD)

            def calls(n: int) -> dict[str, Callable[[], httpx.Response]]:
                body = {"id": "lost-1", "region": "usw1", "eventHistory": [event("x", n)]}
                return {
                    "get": lambda: client.get("/api/v2/recordings/lost-1", auth=alice),
                    "search": lambda: client.get(
                        "/api/v2/recordings", params={"userName": "Kim"}, auth=alice
                    ),
                    "post": lambda: client.post(OPS, json=body, auth=ops),
                    "healthz": lambda: client.get("/healthz"),
                }

            assert client.post(OPS, json=local_recording("lost-1"), auth=ops).status_code == 200
            before = {name: call() for name, call in calls(0).items()}
            assert {k: r.status_code for k, r in before.items()} == dict.fromkeys(before, 200)

            cluster.stop()
            try:
                down_since = time.monotonic()
                # First the pool holds broken connections, then none at all; then the load
                # balancer's health checks go on until the outage has lasted OUTAGE seconds.
                checks = [*calls(1).items(), *calls(2).items()]
                while True:
                    for name, call in checks:
                        began = time.monotonic()
                        try:
                            answer = call()
                        except httpx.TimeoutException:
                            pytest.fail(f"{name} hung for {HANG} s with the database down")
                        assert time.monotonic() - began < HANG, name
                        assert_gws_error(answer, 503 if name == "healthz" else 500, url)
                    if time.monotonic() - down_since >= OUTAGE:
                        break
                    checks = [("healthz", calls(0)["healthz"])]
            finally:
                cluster.start()

            deadline = time.monotonic() + RECOVERY
            n = 10
            while True:
                n += 1
                codes: dict[str, Any] = {}
                after: dict[str, httpx.Response] = {}
                for name, call in sorted(calls(n).items(), key=lambda c: c[0] != "healthz"):
                    try:
                        after[name] = call()
                        codes[name] = after[name].status_code
                    except httpx.TransportError as error:
                        codes[name] = repr(error)
                    if codes[name] != 200:
                        break  # health first, so that a failing poll takes one timeout
                if set(codes.values()) == {200} and len(codes) == len(calls(n)):
                    break
                assert time.monotonic() < deadline, f"not recovered in {RECOVERY} s: {codes}"
                time.sleep(0.1)
            assert server.process.poll() is None  # the same process all along
            posted_last = client.get("/api/v2/recordings/lost-1", auth=alice).json()
            assert event("x", n) in posted_last["recording"]["eventHistory"]
            assert [r["id"] for r in after["search"].json()["recordings"]] == ["lost-1"]
            assert after["healthz"].json() == {"statusCode": 0, "status": "ok"}
        assert DB_PASSWORD not in server.output()


# --------------------------------------------------------------------------- schema


def test_every_key_of_the_distributed_tables_includes_ccid(pg_server: PostgresServer) -> None:
    """A distributed PostgreSQL (Citus, distribution column ``ccid``) requires every primary
    key, unique index and foreign key of a distributed table to include that column."""
    with fresh_schema(pg_server) as url:
        open_store(url).close()  # migrated to the latest schema
        with psycopg.connect(url) as conn:
            keys = conn.execute(
                """
                SELECT c.relname, i.relname, x.indisprimary,
                       ARRAY(SELECT a.attname::text
                             FROM unnest(x.indkey) WITH ORDINALITY AS k(attnum, pos)
                             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
                             ORDER BY k.pos),
                       x.indexprs IS NOT NULL
                FROM pg_index x
                JOIN pg_class c ON c.oid = x.indrelid
                JOIN pg_class i ON i.oid = x.indexrelid
                WHERE c.relnamespace = current_schema()::regnamespace
                  AND c.relname IN ('recordings', 'recording_names', 'name_dictionary')
                  AND (x.indisunique OR x.indisprimary)
                ORDER BY 1, 2
                """
            ).fetchall()
            constraints = conn.execute(
                """
                SELECT tc.table_name, tc.constraint_type,
                       array_agg(k.column_name::text ORDER BY k.ordinal_position)
                FROM information_schema.table_constraints tc
                JOIN information_schema.key_column_usage k
                  ON k.constraint_schema = tc.constraint_schema
                 AND k.constraint_name = tc.constraint_name
                WHERE tc.table_schema = current_schema()
                  AND tc.table_name IN ('recordings', 'recording_names', 'name_dictionary')
                  AND tc.constraint_type IN ('PRIMARY KEY', 'UNIQUE', 'FOREIGN KEY')
                GROUP BY tc.table_name, tc.constraint_name, tc.constraint_type
                """
            ).fetchall()
            exclusion = conn.execute(
                "SELECT count(*) FROM pg_constraint WHERE contype = 'x'"
                " AND connamespace = current_schema()::regnamespace"
            ).fetchone()
    primary = {table: columns for table, _, is_primary, columns, _ in keys if is_primary}
    assert primary == {
        # keyed in search order; the signature of the recording's names is carried (INCLUDE)
        "recording_names": ["ccid", "name", "start_ms", "id", "sig"],
        "name_dictionary": ["ccid", "name"],
    }
    # The recordings' ids are unique by an index, which a load can drop and build again.
    unique = {index: columns for _, index, is_primary, columns, _ in keys if not is_primary}
    assert unique == {"recordings_by_id": ["ccid", "id"]}
    for table, index, _, columns, on_expression in keys:
        assert not on_expression, f"{table}.{index} is a unique index on an expression"
        assert "ccid" in columns, f"{table}.{index} {columns} does not include ccid"
    assert {(table, kind) for table, kind, _ in constraints} >= {
        ("recording_names", "PRIMARY KEY"),
        ("name_dictionary", "PRIMARY KEY"),
    }
    for table, kind, columns in constraints:
        assert "ccid" in columns, f"{kind} of {table} {columns} does not include ccid"
    assert exclusion == (0,)
