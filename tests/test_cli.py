"""The ``callrec`` command, run as the installed console script on a temporary data directory."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from argon2.exceptions import VerificationError

from callrec import __version__
from callrec.demo import demo_jsonl
from callrec.query import matches, parse_query
from callrec.store import RecordingStore, User, open_store, search_key
from conftest import local_recording
from server import run_cli

Done = subprocess.CompletedProcess[str]
Opener = Callable[[], RecordingStore]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


def cli(data: Path, *args: str, input: str | None = None) -> Done:
    return run_cli(data, *args, input=input)


def flat(text: str) -> str:
    """Output with line wrapping undone (rich wraps long messages to the terminal width)."""
    return " ".join(text.split())


@pytest.fixture
def opened(data: Path) -> Iterator[Opener]:
    stores: list[RecordingStore] = []

    def open_data() -> RecordingStore:
        stores.append(open_store(f"sqlite:///{data / 'callrec.db'}"))
        return stores[-1]

    yield open_data
    for store in stores:
        store.close()


def password_ok(user: User | None, password: str) -> bool:
    assert user is not None
    try:
        return PasswordHasher().verify(user.password_hash, password)
    except VerificationError:
        return False


# --------------------------------------------------------------------------- users


FIRST_PASSWORD = "pw-1"


def add(data: Path, name: str, *options: str, password: str = FIRST_PASSWORD) -> Done:
    return cli(data, "users", "add", name, *options, "--password-stdin", input=f"{password}\n")


def test_users_add_and_list(data: Path, opened: Opener) -> None:
    admin = add(
        data,
        "alice",
        "--role",
        "admin",
        "--contact-center",
        "cc1",
        "--first-name",
        "Alice",
        "--last-name",
        "Tester",
    )
    assert admin.returncode == 0, admin.stderr
    assert "alice" in admin.stderr
    assert add(data, "recorder", "--ops", password="ops pw with spaces").returncode == 0
    assert add(data, "agnes", "--role", "agent", "--contact-center", "cc2").returncode == 0

    listed = cli(data, "users", "list")
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[1]: line for line in listed.stdout.splitlines() if line.count("│") > 2}
    assert set(rows) == {"alice", "recorder", "agnes"}
    cells = {name: [c.strip() for c in row.split("│")[1:-1]] for name, row in rows.items()}
    assert cells["alice"] == ["alice", "admin", "cc1", "Alice", "Tester"]
    assert cells["recorder"] == ["recorder", "ops", "-", "", ""]
    assert cells["agnes"] == ["agnes", "agent", "cc2", "", ""]

    store = opened()
    alice = store.get_user("alice")
    assert alice is not None
    assert alice == User("alice", alice.password_hash, "admin", "cc1", "Alice", "Tester")
    assert alice.password_hash.startswith("$argon2")
    assert password_ok(alice, FIRST_PASSWORD)
    assert not password_ok(alice, "pw-2")
    recorder = store.get_user("recorder")
    assert recorder is not None
    assert (recorder.role, recorder.ccid) == ("ops", None)
    assert password_ok(recorder, "ops pw with spaces")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--ops", "--role", "admin"], "--ops"),
        (["--ops", "--contact-center", "cc1"], "--ops"),
        (["--ops", "--role", "admin", "--contact-center", "cc1"], "--ops"),
        (["--role", "admin"], "--contact-center"),
        (["--contact-center", "cc1"], "--role"),
        (["--role", "boss", "--contact-center", "cc1"], "--role"),
        (["--role", "ops", "--contact-center", "cc1"], "--role"),
        ([], "--ops"),
        (["--role", "admin", "--contact-center", "a/b"], "contact center"),
        (["--role", "admin", "--contact-center", ""], "contact"),
    ],
)
def test_users_add_refuses_invalid_combinations(
    data: Path, options: list[str], message: str
) -> None:
    done = add(data, "carol", *options)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert "saved" not in done.stderr


@pytest.mark.parametrize(("name", "password"), [("carol", ""), ("a:b", "pw"), ("", "pw")])
def test_users_add_refuses_bad_names_and_empty_passwords(
    data: Path, opened: Opener, name: str, password: str
) -> None:
    done = add(data, name, "--ops", password=password)
    assert done.returncode == 2
    assert "error" in done.stderr
    if (data / "callrec.db").exists():
        assert opened().list_users() == []


def test_users_add_replaces_an_account_of_the_same_name(data: Path, opened: Opener) -> None:
    assert add(data, "alice", "--role", "admin", "--contact-center", "cc1").returncode == 0
    assert (
        add(data, "alice", "--role", "agent", "--contact-center", "cc2", password="pw-2").returncode
        == 0
    )
    [alice] = opened().list_users()
    assert (alice.name, alice.role, alice.ccid) == ("alice", "agent", "cc2")
    assert password_ok(alice, "pw-2")


def test_users_passwd(data: Path, opened: Opener) -> None:
    assert add(data, "alice", "--role", "admin", "--contact-center", "cc1").returncode == 0
    changed = cli(data, "users", "passwd", "alice", "--password-stdin", input="new-pw\n")
    assert changed.returncode == 0, changed.stderr
    alice = opened().get_user("alice")
    assert password_ok(alice, "new-pw")
    assert not password_ok(alice, FIRST_PASSWORD)
    assert alice is not None
    assert (alice.role, alice.ccid) == ("admin", "cc1")

    unknown = cli(data, "users", "passwd", "nobody", "--password-stdin", input="x\n")
    assert unknown.returncode == 1
    assert "nobody" in unknown.stderr


def test_users_remove(data: Path) -> None:
    assert add(data, "alice", "--role", "admin", "--contact-center", "cc1").returncode == 0
    assert add(data, "bob", "--ops").returncode == 0
    removed = cli(data, "users", "remove", "alice")
    assert removed.returncode == 0, removed.stderr
    listed = cli(data, "users", "list").stdout
    assert "alice" not in listed
    assert "bob" in listed
    again = cli(data, "users", "remove", "alice")
    assert again.returncode == 1
    assert "no user named alice" in flat(again.stderr)


def test_names_are_printed_as_they_are_never_as_markup(data: Path) -> None:
    odd = ["[/x]", "[bold]mallory[/bold]"]
    for name in odd:
        done = add(
            data, name, "--role", "admin", "--contact-center", "cc1", "--first-name", ":-1:[/b]"
        )
        assert done.returncode == 0, done.stderr
        assert f"user {name} saved" in done.stderr
    listed = cli(data, "users", "list")
    assert listed.returncode == 0, listed.stderr
    for name in odd:
        assert name in listed.stdout
    assert ":-1:[/b]" in listed.stdout  # no emoji either
    removed = cli(data, "users", "remove", "[/x]")
    assert (removed.returncode, removed.stderr.strip()) == (0, "user [/x] removed")
    missing = cli(data, "users", "remove", "[/x]")
    assert (missing.returncode, flat(missing.stderr)) == (1, "error: no user named [/x]")


@pytest.mark.parametrize("port", ["70000", "65536", "-1"])
def test_serve_on_a_port_that_is_none_is_a_usage_error(data: Path, port: str) -> None:
    done = cli(data, "serve", "--port", port)
    assert done.returncode == 2
    assert "--port" in done.stderr
    assert "Traceback" not in done.stderr


# --------------------------------------------------------------------------- import / export

BAD_LINES = {
    # line number in the file -> (content, a word the report must contain)
    4: ("{not json", "JSON"),
    9: (json.dumps({"id": "no-region", "startTime": "2020-01-01T00:00:00Z"}), "region"),
    15: (json.dumps(local_recording("bad-time", startTime="2020-13-01T00:00:00Z")), "startTime"),
    20: (json.dumps(local_recording("bad-id/x")), "id"),
    23: (json.dumps({"id": "no-start", "region": "usw1"}), "startTime"),
}
LOCAL_MEDIA = {"storage": "local", "path": "cc1/uploaded-1/call.wav", "data": {"note": "kept"}}


def good_lines(tmp_path: Path, count: int = 40) -> list[str]:
    demo = tmp_path / "demo.jsonl"
    assert demo_jsonl(demo, count, seed=3) == count
    lines = demo.read_text(encoding="utf-8").splitlines()
    extra = [
        local_recording("known-caller", startTime="2013-05-17T21:45:32+02:00", note={"x": [1]}),
        local_recording(
            "uploaded-1",
            callerPhoneNumber="650.466.8888",
            mediaFiles=[
                {"mediaId": "call.wav", "type": "audio/wav", "mediaDescriptor": LOCAL_MEDIA}
            ],
        ),
    ]
    return lines + [json.dumps(doc, ensure_ascii=False) for doc in extra]


def write_with_bad_lines(path: Path, good: list[str]) -> None:
    lines = list(good)
    for number in sorted(BAD_LINES):
        lines.insert(number - 1, BAD_LINES[number][0])
    lines.insert(30, "")  # blank lines are skipped, not failures
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def export(data: Path, ccid: str, *options: str) -> str:
    done = cli(data, "export", "--contact-center", ccid, *options)
    assert done.returncode == 0, done.stderr
    return done.stdout


def docs_of(jsonl: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in jsonl.splitlines()]


def test_import_reports_bad_lines_and_is_idempotent(data: Path, tmp_path: Path) -> None:
    good = good_lines(tmp_path)
    source = tmp_path / "mixed.jsonl"
    write_with_bad_lines(source, good)

    first = cli(data, "import", str(source), "--contact-center", "cc1")
    assert first.returncode == 1
    reports = first.stderr.splitlines()
    for number, (_, reason) in BAD_LINES.items():
        [report] = [r for r in reports if r.startswith(f"line {number}: ")]
        assert reason in report
    assert len([r for r in reports if r.startswith("line ")]) == len(BAD_LINES)
    assert f"imported {len(good)} recordings, {len(BAD_LINES)} lines failed" in flat(first.stderr)

    exported = export(data, "cc1")
    docs = docs_of(exported)
    assert sorted(d["id"] for d in docs) == sorted(json.loads(line)["id"] for line in good)
    assert [search_key(d) for d in docs] == sorted(search_key(d) for d in docs)
    known = next(d for d in docs if d["id"] == "known-caller")
    assert known["startTime"] == "2013-05-17T19:45:32.000+0000"
    assert known["note"] == {"x": [1]}
    uploaded = next(d for d in docs if d["id"] == "uploaded-1")
    assert uploaded["mediaFiles"][0]["mediaDescriptor"] == LOCAL_MEDIA
    assert "originalMediaDescriptor" not in uploaded["mediaFiles"][0]

    again = cli(data, "import", str(source), "--contact-center", "cc1")
    assert again.returncode == 1
    assert f"imported {len(good)} recordings, {len(BAD_LINES)} lines failed" in flat(again.stderr)
    assert export(data, "cc1") == exported


def test_import_of_a_clean_file_exits_0(data: Path, tmp_path: Path) -> None:
    source = tmp_path / "clean.jsonl"
    source.write_text("\n".join(good_lines(tmp_path, 10)) + "\n", encoding="utf-8")
    done = cli(data, "import", str(source), "--contact-center", "cc1")
    assert done.returncode == 0, done.stderr
    assert "imported 12 recordings, 0 lines failed" in flat(done.stderr)


def test_an_import_says_how_long_it_took_and_into_an_empty_database_how_long_the_builds(
    data: Path, tmp_path: Path
) -> None:
    source = tmp_path / "clean.jsonl"
    source.write_text("\n".join(good_lines(tmp_path, 10)) + "\n", encoding="utf-8")
    seconds = r"(\d+\.\d) s"
    first = cli(data, "import", str(source), "--contact-center", "cc1")
    found = re.search(
        rf"0 lines failed, in {seconds} \(rows {seconds}, indexes and statistics {seconds}\):"
        r" ([\d,]+) recordings/s",
        flat(first.stderr),
    )
    assert found, first.stderr
    total, rows, builds = (float(found[i]) for i in (1, 2, 3))
    assert abs(rows + builds - total) <= 0.151  # each rounded to a tenth
    assert int(found[4].replace(",", "")) > 0
    # Into a database that holds recordings, nothing is dropped nor built again.
    again = cli(data, "import", str(source), "--contact-center", "cc1")
    assert re.search(rf"0 lines failed, in {seconds}: [\d,]+ recordings/s", flat(again.stderr))
    assert "indexes" not in flat(again.stderr)


@pytest.mark.parametrize(
    "args",
    [
        ["import", "missing.jsonl", "--contact-center", "cc1"],
        ["import", "{file}", "--contact-center", "bad/cc"],
        ["import", "{file}"],
    ],
)
def test_import_usage_errors_exit_2(data: Path, tmp_path: Path, args: list[str]) -> None:
    source = tmp_path / "one.jsonl"
    source.write_text(json.dumps(local_recording()) + "\n")
    done = cli(data, *[a.replace("{file}", str(source)) for a in args])
    assert done.returncode == 2
    assert "Traceback" not in done.stderr


@pytest.fixture
def imported(data: Path, tmp_path: Path) -> str:
    source = tmp_path / "clean.jsonl"
    source.write_text("\n".join(good_lines(tmp_path, 60)) + "\n", encoding="utf-8")
    assert cli(data, "import", str(source), "--contact-center", "cc1").returncode == 0
    return export(data, "cc1")


def test_export_reimports_identically_into_another_database(
    data: Path, tmp_path: Path, imported: str
) -> None:
    copy = tmp_path / "export.jsonl"
    written = cli(data, "export", "--contact-center", "cc1", "-o", str(copy))
    assert written.returncode == 0, written.stderr
    assert copy.read_text(encoding="utf-8") == imported
    assert "exported 62 recordings" in flat(written.stderr)
    other = tmp_path / "other"
    assert cli(other, "import", str(copy), "--contact-center", "cc1").returncode == 0
    assert export(other, "cc1") == imported
    assert export(data, "empty") == ""


def test_import_refuses_media_of_another_contact_center(data: Path, imported: str) -> None:
    copy = data.parent / "export.jsonl"
    copy.write_text(imported, encoding="utf-8")
    moved = cli(data, "import", str(copy), "--contact-center", "cc2")
    assert moved.returncode == 1
    assert "must start with the contact center id" in flat(moved.stderr)


QUERY_OPTIONS = {
    "--caller-phone-number": "callerPhoneNumber",
    "--dialed-phone-number": "dialedPhoneNumber",
    "--start-time": "startTime",
    "--end-time": "endTime",
    "--user-name": "userName",
}
FILTERS = [
    ["--caller-phone-number", "*4668*"],
    ["--caller-phone-number", "+1 (650) 466-8888"],
    ["--dialed-phone-number", "1*555*"],
    ["--user-name", "kim* Smith"],
    ["--user-name", "M* AND *a*"],
    ["--start-time", "2024-07-01", "--end-time", "2025-07-01T00:00:00.000+0000"],
    ["--start-time", "1719792000000"],
]


@pytest.mark.parametrize("options", FILTERS, ids=[" ".join(f) for f in FILTERS])
def test_export_with_query_options(
    data: Path, tmp_path: Path, imported: str, options: list[str]
) -> None:
    params = {
        QUERY_OPTIONS[option]: value
        for option, value in zip(options[::2], options[1::2], strict=True)
    }
    query = parse_query(params)
    expected = [d for d in docs_of(imported) if matches(query, d)]
    assert expected, f"no demo recording matches {params}"
    assert len(expected) < len(docs_of(imported))
    filtered = export(data, "cc1", *options)
    assert docs_of(filtered) == expected
    # What one query exported re-imports as exactly that into another database.
    part = tmp_path / "part.jsonl"
    part.write_text(filtered, encoding="utf-8")
    other = tmp_path / "other"
    assert cli(other, "import", str(part), "--contact-center", "cc1").returncode == 0
    assert export(other, "cc1") == filtered


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--start-time", "yesterday"], "startTime"),
        (["--end-time", "2013-02-30"], "endTime"),
        (["--caller-phone-number", "()-+"], "callerPhoneNumber"),
        (["--dialed-phone-number", ""], "dialedPhoneNumber"),
        (["--user-name", "Ann AND"], "userName"),
        (["--user-name", "   "], "userName"),
        (["--contact-center", "a/b"], "contact center"),
    ],
)
def test_export_with_an_invalid_option_exits_2(
    data: Path, options: list[str], message: str
) -> None:
    args = options if "--contact-center" in options else ["--contact-center", "cc1", *options]
    done = cli(data, "export", *args)
    assert done.returncode == 2
    assert message in flat(done.stderr)
    assert done.stdout == ""
    assert "Traceback" not in done.stderr


def test_export_to_a_path_that_cannot_be_written_exits_2(data: Path, tmp_path: Path) -> None:
    for target in (tmp_path, tmp_path / "no-such-dir" / "x.jsonl"):
        done = cli(data, "export", "--contact-center", "cc1", "-o", str(target))
        assert done.returncode == 2, done.stderr
        assert f"cannot write {target}" in flat(done.stderr)
        assert "Traceback" not in done.stderr


# --------------------------------------------------------------------------- migrate, version


def test_migrate(data: Path, opened: Opener) -> None:
    first = cli(data, "migrate")
    assert first.returncode == 0, first.stderr
    assert (data / "callrec.db").exists()
    assert cli(data, "migrate").returncode == 0
    opened().ping()


def test_version(data: Path) -> None:
    done = cli(data, "version")
    assert done.returncode == 0
    assert done.stdout.strip() == __version__


def test_import_and_export_on_every_backend(database_url: str, tmp_path: Path) -> None:
    """The same file imports (twice: idempotent) and exports identically on each backend."""
    env = {"CALLREC_DATABASE_URL": database_url}
    data = tmp_path / "node"
    source = tmp_path / "clean.jsonl"
    source.write_text("\n".join(good_lines(tmp_path, 300)) + "\n", encoding="utf-8")
    for _ in range(2):
        done = run_cli(data, "import", str(source), "--contact-center", "cc1", env=env)
        assert done.returncode == 0, done.stderr
        assert "imported 302 recordings, 0 lines failed" in flat(done.stderr)
    exported = run_cli(data, "export", "--contact-center", "cc1", env=env)
    assert exported.returncode == 0, exported.stderr
    reference = tmp_path / "reference"
    assert run_cli(reference, "import", str(source), "--contact-center", "cc1").returncode == 0
    assert exported.stdout == export(reference, "cc1")
    assert len(docs_of(exported.stdout)) == 302


def test_database_errors_never_show_the_password() -> None:
    from callrec.cli import redact

    url = "postgresql://callrec:S3cret@db.example:5432/callrec"
    message = f'invalid connection option in "{url}"'
    assert "S3cret" not in redact(message, url)
    assert redact(message, url).count("***") == 1
    assert redact("plain", None) == "plain"
