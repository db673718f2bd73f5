"""The documentation keeps up with the code: settings, endpoints, status codes, commands, links.

Each test derives the list of things to document from the code itself, so adding a setting, a
route, an error or a command without documenting it fails here.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Any

import pytest
import typer

import callrec.cli
import callrec.errors
from callrec.app import create_app
from callrec.errors import GWSError
from callrec.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
SOURCE = ROOT / "src" / "callrec"
PLACEHOLDER = re.compile(r"\{[^}/]+\}")
# Documented on purpose although they are not routes of the OpenAPI schema.
SERVICE_ONLY = {("GET", "/openapi.json")}


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def section(text: str, heading: str) -> str:
    """The body of the Markdown section whose heading line is ``heading``."""
    level = heading.index(" ")
    lines = text.splitlines()
    body: list[str] = []
    in_code = False
    for line in lines[lines.index(heading) + 1 :]:
        in_code ^= line.startswith("```")
        if not in_code and re.match(rf"#{{1,{level}}} ", line):
            break
        body.append(line)
    return "\n".join(body)


def normalise_path(path: str) -> str:
    """Path parameters named differently in docs and schema (``{id}`` / ``{recording_id}``)."""
    return PLACEHOLDER.sub("{}", path)


# --------------------------------------------------------------------------- settings


@pytest.mark.parametrize("field", sorted(Settings.model_fields))
def test_every_setting_is_documented(field: str) -> None:
    assert f"`CALLREC_{field.upper()}`" in read(DOCS / "configuration.md")


def test_no_unknown_setting_is_documented() -> None:
    documented = set(re.findall(r"`CALLREC_([A-Z_]+)`", read(DOCS / "configuration.md")))
    assert documented <= {field.upper() for field in Settings.model_fields}


# --------------------------------------------------------------------------- endpoints


def schema_endpoints(tmp_path: Path) -> set[tuple[str, str]]:
    schema = create_app(Settings(data_dir=tmp_path, root_path="")).openapi()
    return {
        (method.upper(), normalise_path(path))
        for path, operations in schema["paths"].items()
        for method in operations
    }


def documented_endpoints() -> set[tuple[str, str]]:
    """(method, path) pairs of the "Endpoints at a glance" table of docs/api.md."""
    table = section(read(DOCS / "api.md"), "## Endpoints at a glance")
    pairs = set()
    for line in table.splitlines():
        match = re.match(r"\| ([A-Z, ]+) \| `([^`]+)` \|", line)
        if match:
            for method in match.group(1).split(","):
                pairs.add((method.strip(), normalise_path(match.group(2))))
    return pairs


def test_every_path_is_documented(tmp_path: Path) -> None:
    text = normalise_path(read(DOCS / "api.md"))
    for _, path in schema_endpoints(tmp_path):
        assert re.search(re.escape(path) + r"(?![\w/{])", text), path


def test_endpoint_table_matches_the_app(tmp_path: Path) -> None:
    assert documented_endpoints() - SERVICE_ONLY == schema_endpoints(tmp_path)


# --------------------------------------------------------------------------- status codes


def error_classes() -> list[type[GWSError]]:
    """Every GWS error class defined anywhere in the package (create_app imports them all)."""
    found, todo = [], [GWSError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def status_table() -> list[tuple[str, str]]:
    """(statusCode, HTTP) cells of the status code table of docs/api.md."""
    rows = []
    for line in section(read(DOCS / "api.md"), "## Status codes").splitlines():
        match = re.match(r"\| *([0-9]+|\u2013|-) *\| *([0-9]{3}) *\|", line)
        if match:
            rows.append((match.group(1), match.group(2)))
    return rows


def test_every_status_code_is_in_the_table() -> None:
    defined = {
        cls.status_code
        for cls in vars(callrec.errors).values()
        if isinstance(cls, type) and issubclass(cls, GWSError)
    }
    documented = {int(code) for code, _ in status_table() if code.isdigit()}
    assert defined | {0, 7} <= documented


def test_every_http_status_is_in_the_table() -> None:
    used = {cls.http_status for cls in error_classes()}
    # Statuses given at the raise site or on a response: 304, 405, 413, 503, ...
    for source in SOURCE.rglob("*.py"):
        used |= {int(s) for s in re.findall(r"(?:http_status|status_code)=(\d{3})", read(source))}
    documented = {int(http) for _, http in status_table()}
    assert used | {200, 206} <= documented


def test_status_table_pairs_match_the_errors() -> None:
    pairs = set(status_table())
    for cls in error_classes():
        assert (str(cls.status_code), str(cls.http_status)) in pairs, cls.__name__


# --------------------------------------------------------------------------- commands


def cli_commands() -> dict[str, Any]:
    """Every command as its full name ("users add"), groups included.

    Typer ships its own copy of click, so commands are told apart by shape, not by class.
    """
    found: dict[str, Any] = {}

    def walk(group: Any, prefix: str) -> None:
        for name, command in group.commands.items():
            found[f"{prefix}{name}"] = command
            if hasattr(command, "commands"):
                walk(command, f"{prefix}{name} ")

    walk(typer.main.get_command(callrec.cli.app), "")
    return found


@pytest.mark.parametrize("name", sorted(cli_commands()))
def test_every_command_is_documented(name: str) -> None:
    text = read(DOCS / "cli.md")
    command = cli_commands()[name]
    if hasattr(command, "commands"):
        assert f"## callrec {name} " in text, name
        return
    assert f"\n## callrec {name}\n" in text, name
    body = section(text, f"## callrec {name}")
    options = [p for p in command.params if p.param_type_name == "option"]
    for opt in (opt for param in options for opt in param.opts):
        assert re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", body), (name, opt)


# --------------------------------------------------------------------------- README, links


def test_readme_gives_the_run_and_test_commands() -> None:
    text = read(README)
    assert "make run" in text
    assert "make test" in text


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = "".join(
        c for c in heading.strip().lower() if c in " -_" or unicodedata.category(c)[0] in "LN"
    )
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    in_code = False
    for line in read(path).splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and (match := re.match(r"#{1,6} (.+)", line)):
            base = slug(match.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            out.add(base if count == 0 else f"{base}-{count}")
    return out


@pytest.mark.parametrize(
    "page", [README, DOCS / "api.md", DOCS / "configuration.md", DOCS / "cli.md"], ids=str
)
def test_links_point_at_existing_pages_and_headings(page: Path) -> None:
    for target in re.findall(r"\]\(([^)\s]+)\)", read(page)):
        if re.match(r"[a-z]+:", target):
            continue
        file_part, _, anchor = target.partition("#")
        linked = (page.parent / file_part).resolve() if file_part else page
        assert linked.is_file(), f"{page.name} links to missing {target}"
        assert linked.is_relative_to(ROOT), target
        if anchor and linked.suffix == ".md":
            assert anchor in anchors(linked), f"{page.name} links to missing {target}"


def test_readme_links_only_to_docs() -> None:
    for target in re.findall(r"\]\(([^)\s#]+)", read(README)):
        if not re.match(r"[a-z]+:", target):
            assert target.startswith("docs/"), target
