"""``callrec media check``: does every referenced media file exist, with the recorded size?
And which files in the storages does no recording reference?

The engine is independent of the terminal: the CLI passes callbacks to show progress.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio

from callrec.errors import GWSError
from callrec.media import MediaMissing, MediaStore
from callrec.media.locations import Storages

Problem = Literal["missing", "size", "unreachable", "unlisted", "orphan"]
CONCURRENCY = 16


@dataclass(frozen=True, slots=True)
class Reference:
    """A media file a recording points at."""

    ccid: str
    recording_id: str
    media_id: str
    storage: str
    path: str
    size: int | None  # as recorded, when it is a whole number


@dataclass(frozen=True, slots=True)
class Finding:
    problem: Problem
    storage: str
    path: str
    detail: str = ""
    reference: Reference | None = None


@dataclass
class Report:
    checked: int = 0
    findings: list[Finding] = field(default_factory=list)
    listed: int = 0

    def count(self, problem: Problem) -> int:
        return sum(1 for f in self.findings if f.problem == problem)

    @property
    def failed(self) -> bool:
        """Referenced media missing, of another size or out of reach, or a storage that could
        not be listed (orphans are reported, not failures: they may be legitimate)."""
        return any(f.problem != "orphan" for f in self.findings)


def references(recordings: Iterable[tuple[str, Mapping[str, Any]]]) -> Iterator[Reference]:
    """Every located media file of ``recordings`` ((ccid, document) pairs)."""
    for ccid, doc in recordings:
        for media in doc.get("mediaFiles", []):
            descriptor = media.get("mediaDescriptor") if isinstance(media, dict) else None
            if not isinstance(descriptor, dict):
                continue  # declared, never uploaded: nothing to check
            size = str(media.get("size", ""))
            yield Reference(
                ccid,
                str(doc.get("id")),
                str(media.get("mediaId")),
                str(descriptor.get("storage")),
                str(descriptor.get("path")),
                int(size) if size.isdigit() else None,
            )


async def check_references(
    storages: Storages,
    refs: list[Reference],
    report: Report,
    on_checked: Callable[[], None] = lambda: None,
) -> None:
    """Stat every reference, ``CONCURRENCY`` at a time, and record what is wrong."""
    pending = iter(refs)  # shared by the workers: each reference is taken once

    async def worker() -> None:
        for ref in pending:
            finding = await _check_one(storages.stores.get(ref.storage), ref)
            report.checked += 1
            if finding is not None:
                report.findings.append(finding)
            on_checked()

    async with anyio.create_task_group() as group:
        for _ in range(CONCURRENCY):
            group.start_soon(worker)


async def _check_one(store: MediaStore | None, ref: Reference) -> Finding | None:
    if store is None:
        return Finding("unreachable", ref.storage, ref.path, "storage not configured", ref)
    try:
        stat = await store.stat(ref.path)
    except MediaMissing:
        return Finding("missing", ref.storage, ref.path, "", ref)
    except (GWSError, OSError) as error:
        return Finding("unreachable", ref.storage, ref.path, _reason(error), ref)
    if ref.size is not None and stat.size != ref.size:
        return Finding(
            "size", ref.storage, ref.path, f"recorded {ref.size}, found {stat.size}", ref
        )
    return None


async def find_orphans(
    storages: Storages,
    referenced: set[tuple[str, str]],
    prefix: str,
    report: Report,
    on_listed: Callable[[int], None] = lambda n: None,
) -> None:
    """Files of every storage (under ``prefix``) that no recording references."""
    for name, store in storages.stores.items():
        try:
            async for key, size in store.list_files(prefix):
                report.listed += 1
                on_listed(report.listed)
                if (name, key) not in referenced:
                    report.findings.append(Finding("orphan", name, key, f"{size} bytes"))
        except (GWSError, OSError) as error:
            report.findings.append(Finding("unlisted", name, prefix, _reason(error)))


def _reason(error: Exception) -> str:
    return error.message if isinstance(error, GWSError) else type(error).__name__
