"""The modules every imported or posted recording runs through, compiled to C with mypyc
(part of mypy): an import's workers spend about a third less CPU a recording
(docs/decisions.md, docs/performance.md). ``CALLREC_PURE_PYTHON=1`` builds without them."""

import os

from setuptools import setup

COMPILED = ["src/callrec/model.py", "src/callrec/query.py", "src/callrec/ingest.py"]

if os.environ.get("CALLREC_PURE_PYTHON"):
    setup()
else:
    from mypyc.build import mypycify

    # Not the project's mypy settings (their pydantic plugin is not in the build's
    # environment, nor are the libraries: what comes from them is typed Any). One group,
    # named inside the package: its shared library is callrec/_native__mypyc.
    options = ["--config-file=", "--ignore-missing-imports"]
    setup(ext_modules=mypycify([*options, *COMPILED], group_name="callrec._native"))
