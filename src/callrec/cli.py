"""The ``callrec`` command: serve, users, import, export, migrate, media check."""

from __future__ import annotations

import asyncio
import gc
import sys
import time
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import orjson
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from callrec import __version__
from callrec.auth import OPS, ROLES, hash_password
from callrec.errors import GWSError
from callrec.importer import ImportResult, default_jobs, import_file
from callrec.ingest import as_posted
from callrec.media.check import Reference, Report, check_references, find_orphans, references
from callrec.media.config import StorageConfigError
from callrec.model import is_safe_name
from callrec.query import RecordingQuery, parse_query
from callrec.services import Services
from callrec.settings import Settings
from callrec.store import User, search_key

app = typer.Typer(
    help="callrec: a call-recording catalogue speaking the GWS Call Recording API.",
    no_args_is_help=True,
    add_completion=False,
)
users = typer.Typer(help="Manage accounts.", no_args_is_help=True)
app.add_typer(users, name="users")
media = typer.Typer(help="Maintain the media storages.", no_args_is_help=True)
app.add_typer(media, name="media")
# Plain text: what is printed holds names and values users chose ("[/x]" is a valid user
# name, ":-1:" a part of an address), never markup or emoji codes.
err = Console(stderr=True, soft_wrap=True, markup=False, emoji=False, highlight=False)
BATCH = 1000


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(Text.assemble(("error:", "red"), f" {message}"))
    return typer.Exit(code)


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as error:
        problems = "; ".join(
            (f"CALLREC_{'_'.join(map(str, e['loc'])).upper()}: " if e["loc"] else "")
            + e["msg"].removeprefix("Value error, ")
            for e in error.errors()
        )
        raise fail(f"invalid configuration: {problems}", 2) from None


def open_services(settings: Settings | None = None) -> Services:
    settings = settings or load_settings()
    try:
        return Services.open(settings)
    except StorageConfigError as error:
        raise fail(f"invalid storage configuration: {error}", 2) from None
    except Exception as error:  # one line for the operator, not a traceback
        message = redact(f"{type(error).__name__}: {error}", settings.database_url)
        raise fail(f"cannot open the database: {message}") from None


def redact(message: str, url: str | None) -> str:
    """The message without the database URL's password (drivers may quote the URL)."""
    password = urlsplit(url).password if url else None
    return message.replace(password, "***") if password else message


def checked_ccid(ccid: str) -> str:
    if not is_safe_name(ccid):
        raise fail("contact center id must be 1-128 characters of [A-Za-z0-9._-]", 2)
    return ccid


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=0, max=65535)] = 8080,
    demo: Annotated[bool, typer.Option("--demo", help="Seed a demo contact center first.")] = False,
) -> None:
    """Run the HTTP service (data under CALLREC_DATA_DIR, default ./callrec-data)."""
    from callrec import server
    from callrec.app import create_app

    settings = load_settings()
    services = open_services(settings)
    if demo:
        from callrec.seeding import seed_demo

        login = seed_demo(services)
        base = settings.public_url or f"http://{host}:{port}"
        err.print(
            Text.assemble(
                "Demo contact center ",
                (login.ccid, "bold"),
                " is ready. Sign in as ",
                (login.user, "bold"),
                " / ",
                (login.password, "bold"),
                " (unless changed), e.g.\n"
                f"  curl -u {login.user}:{login.password} "
                f"'{base}{settings.root_path}/api/v2/recordings?userName=*'",
            )
        )
    try:
        server.run(create_app(settings, services), host, port, settings.log_level)
    except server.PortInUse as error:
        raise fail(str(error)) from None
    finally:
        services.close()


def read_password(stdin: bool) -> str:
    if stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    if not password:
        raise fail("the password must not be empty", 2)
    return password


@users.command("add")
def users_add(
    name: str,
    role: Annotated[str | None, typer.Option(help="admin, supervisor or agent.")] = None,
    contact_center: Annotated[str | None, typer.Option(help="The user's contact center.")] = None,
    ops: Annotated[bool, typer.Option("--ops", help="An OPS account (no contact center).")] = False,
    first_name: Annotated[str | None, typer.Option()] = None,
    last_name: Annotated[str | None, typer.Option()] = None,
    password_stdin: Annotated[bool, typer.Option(help="Read the password from stdin.")] = False,
) -> None:
    """Add an account (or replace one of the same name)."""
    if ops == bool(role or contact_center):
        raise fail("give either --ops, or --role and --contact-center", 2)
    if not ops and (role not in ROLES or not contact_center):
        raise fail(f"--role must be one of {', '.join(ROLES)}, with --contact-center", 2)
    if not name or any(c in name for c in ":\x00") or len(name) > 256:
        raise fail("user names are 1-256 characters without ':'", 2)
    ccid = checked_ccid(contact_center) if contact_center else None
    password = read_password(password_stdin)
    services = open_services()
    try:
        services.store.put_user(
            User(
                name,
                hash_password(password),
                OPS if ops else str(role),
                ccid,
                first_name,
                last_name,
            )
        )
    finally:
        services.close()
    err.print(f"user {name} saved")


@users.command("list")
def users_list() -> None:
    """List accounts."""
    services = open_services()
    try:
        accounts = services.store.list_users()
    finally:
        services.close()
    table = Table("name", "role", "contact center", "first name", "last name")
    for user in accounts:
        table.add_row(
            user.name, user.role, user.ccid or "-", user.first_name or "", user.last_name or ""
        )
    Console(markup=False, emoji=False, highlight=False).print(table)


@users.command("remove")
def users_remove(name: str) -> None:
    """Remove an account."""
    services = open_services()
    try:
        removed = services.store.delete_user(name)
    finally:
        services.close()
    if not removed:
        raise fail(f"no user named {name}")
    err.print(f"user {name} removed")


@users.command("passwd")
def users_passwd(
    name: str,
    password_stdin: Annotated[bool, typer.Option(help="Read the password from stdin.")] = False,
) -> None:
    """Set an account's password."""
    services = open_services()
    try:
        user = services.store.get_user(name)
        if user is None:
            raise fail(f"no user named {name}")
        password = read_password(password_stdin)
        services.store.put_user(
            User(
                name, hash_password(password), user.role, user.ccid, user.first_name, user.last_name
            )
        )
    finally:
        services.close()
    err.print(f"password of {name} changed")


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TransferSpeedColumn(),
        console=err,
        transient=False,
    )


@app.command("import")
def import_(
    file: Annotated[
        Path,
        typer.Argument(
            help="JSON lines, one ops-create recording per line.",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ],
    contact_center: Annotated[str, typer.Option(help="Contact center to import into.")],
    jobs: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Worker processes decoding and validating lines (0: none). Default: one per CPU.",
        ),
    ] = None,
) -> None:
    """Import recordings (idempotent: re-running merges). Bad lines are reported, not fatal."""
    ccid = checked_ccid(contact_center)
    services = open_services()

    def on_error(line_no: int, message: str) -> None:
        err.print(f"line {line_no}: {message}")

    gc.freeze()  # what start-up made lives as long as the command: no collection walks it
    started = time.monotonic()
    try:
        with services.store.bulk_load() as deferred, _progress() as progress:
            task = progress.add_task("importing", total=file.stat().st_size)
            result = import_file(
                services,
                file,
                ccid,
                jobs=default_jobs() if jobs is None else jobs,
                on_error=on_error,
                on_progress=lambda size: progress.advance(task, size),
            )
            rows = time.monotonic() - started
            if deferred:
                progress.stop()
                err.print("building the indexes ...")
        services.store.optimize()
    finally:
        services.close()
    err.print(_import_summary(result, rows, time.monotonic() - started, deferred))
    if result.failed:
        raise typer.Exit(1)


def _import_summary(result: ImportResult, rows: float, total: float, deferred: bool) -> str:
    """What an import did, and how long it took: the rows, then (into an empty database) the
    indexes built at the end and the statistics."""
    split = f" (rows {rows:.1f} s, indexes and statistics {total - rows:.1f} s)" if deferred else ""
    rate = result.imported / total if total > 0 else 0.0
    return (
        f"imported {result.imported} recordings, {result.failed} lines failed,"
        f" in {total:.1f} s{split}: {rate:,.0f} recordings/s"
    )


@app.command()
def export(
    contact_center: Annotated[str, typer.Option(help="Contact center to export.")],
    caller_phone_number: Annotated[
        str | None, typer.Option(help="As the API's callerPhoneNumber.")
    ] = None,
    dialed_phone_number: Annotated[
        str | None, typer.Option(help="As the API's dialedPhoneNumber.")
    ] = None,
    start_time: Annotated[str | None, typer.Option(help="As the API's startTime.")] = None,
    end_time: Annotated[str | None, typer.Option(help="As the API's endTime.")] = None,
    user_name: Annotated[str | None, typer.Option(help="As the API's userName.")] = None,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="File (default stdout).")
    ] = None,
) -> None:
    """Export matching recordings (all when no query option is given) as JSON lines."""
    ccid = checked_ccid(contact_center)
    given = {
        "callerPhoneNumber": caller_phone_number,
        "dialedPhoneNumber": dialed_phone_number,
        "startTime": start_time,
        "endTime": end_time,
        "userName": user_name,
    }
    params = {k: v for k, v in given.items() if v is not None}
    try:
        query = parse_query(params) if params else RecordingQuery()
    except GWSError as error:
        raise fail(error.message, 2) from None
    try:
        out = output.open("wb") if output else sys.stdout.buffer
    except OSError as error:
        raise fail(f"cannot write {output}: {error.strerror or error}", 2) from None
    services = open_services()
    count = 0
    try:
        with _progress() as progress:
            task = progress.add_task("exporting", total=None)
            after = None
            while page := services.store.search(ccid, query, limit=BATCH, after=after):
                for doc in page:
                    out.write(orjson.dumps(as_posted(doc)) + b"\n")
                count += len(page)
                progress.update(task, completed=count)
                after = search_key(page[-1])
    finally:
        services.close()
        if output:
            out.close()
    err.print(f"exported {count} recordings")


@app.command()
def migrate() -> None:
    """Create or upgrade the database schema (start-up does this too)."""
    services = open_services()
    services.close()
    err.print("database schema is up to date")


@media.command("check")
def media_check(
    contact_center: Annotated[
        str | None, typer.Option(help="Check only this contact center's recordings.")
    ] = None,
) -> None:
    """Check that every referenced media file exists with its recorded size; list orphans."""
    ccid = checked_ccid(contact_center) if contact_center else None
    services = open_services()
    try:
        everything = list(references(services.store.iter_recordings()))
        refs = [r for r in everything if ccid is None or r.ccid == ccid]
        # Files referenced by any contact center are not orphans of the one checked.
        referenced = {(r.storage, r.path) for r in everything}
        report = asyncio.run(_check_media(services, refs, referenced, f"{ccid}/" if ccid else ""))
    finally:
        services.close()
    out = sys.stdout
    for finding in report.findings:
        ref = finding.reference
        where = [ref.ccid, ref.recording_id, ref.media_id] if ref else []
        out.write(
            "\t".join([finding.problem, finding.storage, finding.path, *where, finding.detail])
        )
        out.write("\n")
    err.print(
        f"checked {report.checked} media files: {report.count('missing')} missing, "
        f"{report.count('size')} of another size, {report.count('unreachable')} unreachable; "
        f"{report.count('orphan')} orphaned files among {report.listed} stored"
        + (f"; {report.count('unlisted')} storages not listed" if report.count("unlisted") else "")
    )
    if report.failed:
        raise typer.Exit(1)


async def _check_media(
    services: Services, refs: list[Reference], referenced: set[tuple[str, str]], prefix: str
) -> Report:
    report = Report()
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    try:
        with Progress(*columns, console=err, transient=False) as progress:
            checking = progress.add_task("checking media files", total=len(refs))
            await check_references(
                services.storages, refs, report, lambda: progress.advance(checking)
            )
            listing = progress.add_task("looking for orphaned files", total=None)
            await find_orphans(
                services.storages,
                referenced,
                prefix,
                report,
                lambda n: progress.update(listing, completed=n),
            )
            progress.update(listing, total=report.listed, completed=report.listed)
    finally:
        await services.storages.aclose()
    return report


@app.command()
def version() -> None:
    """Print the version."""
    print(__version__)


def main() -> None:
    app()
