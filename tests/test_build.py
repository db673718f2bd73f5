"""The modules every recording runs through are compiled (setup.py, mypyc), and the build
keeps them in step with their sources."""

from __future__ import annotations

import importlib
import os
import re
from pathlib import Path
from types import FunctionType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def compiled_sources() -> list[Path]:
    """The sources setup.py compiles (its ``COMPILED``), as the Makefile reads them too."""
    found = re.search(r"^COMPILED = \[(.*)\]$", (ROOT / "setup.py").read_text(), re.MULTILINE)
    assert found is not None, "setup.py has no COMPILED list"
    return [ROOT / path.strip().strip('"') for path in found.group(1).split(",")]


def module_name(source: Path) -> str:
    return ".".join(source.relative_to(ROOT / "src").with_suffix("").parts)


def built(source: Path) -> Path | None:
    """The extension module built from ``source``, if there is one. (A compiled module's own
    ``__file__`` is not always where it is: mypyc names some one directory too deep.)"""
    found = sorted(source.parent.glob(f"{source.stem}.*.so"))
    return found[0] if found else None


def stale_modules() -> list[str]:
    """The compiled modules older than their sources."""
    stale = []
    for source in compiled_sources():
        extension = built(source)
        if extension is not None and extension.stat().st_mtime < source.stat().st_mtime:
            stale.append(module_name(source))
    return stale


@pytest.mark.skipif(
    bool(os.environ.get("CALLREC_PURE_PYTHON")), reason="CALLREC_PURE_PYTHON: built without"
)
def test_the_hot_path_modules_run_compiled() -> None:
    sources = compiled_sources()
    assert {module_name(s) for s in sources} >= {"callrec.model", "callrec.query", "callrec.ingest"}
    for source in sources:
        module = importlib.import_module(module_name(source))
        assert built(source) is not None, module.__name__
        assert str(module.__file__).endswith(".so"), module.__name__
        # Its own functions are compiled ones, not Python's.
        own = [v for v in vars(module).values() if getattr(v, "__module__", "") == module.__name__]
        assert own, module.__name__
        assert not any(isinstance(v, FunctionType) for v in own), module.__name__


def test_a_source_edited_after_the_build_is_reported_stale() -> None:
    source = compiled_sources()[0]
    extension = built(source)
    if extension is None:
        pytest.skip("built without compiled modules (CALLREC_PURE_PYTHON)")
    assert module_name(source) not in stale_modules()
    times = source.stat()
    try:
        os.utime(source, (times.st_atime, extension.stat().st_mtime + 10))
        assert module_name(source) in stale_modules()
    finally:
        os.utime(source, ns=(times.st_atime_ns, times.st_mtime_ns))
