"""Writes recordings at a steady rate, as recorders do beside the readers, while GET
/recordings/{id} is measured (``bench/run.py --writes``).

    python bench/writer.py RATE SECONDS

Each write is one recording committed on its own, into a contact center of its own
(``bench-writes``), so that the benchmark's searches see none of them. The database is the
one the environment's ``CALLREC_*`` settings name, as for the server measured.
"""

from __future__ import annotations

import sys
import time

from callrec.settings import Settings
from callrec.store import open_store

CCID = "bench-writes"


def recording(number: int) -> dict[str, object]:
    return {
        "id": f"writer-{number:09d}",
        "callerPhoneNumber": "+14155550100",
        "dialedPhoneNumber": "+14155550199",
        "startTime": "2024-01-01T00:00:00.000+0000",
        "stopTime": "2024-01-01T00:05:00.000+0000",
        "mediaFiles": [],
    }


def main() -> None:
    rate, seconds = float(sys.argv[1]), float(sys.argv[2])
    store = open_store(Settings().resolved_database_url)
    try:
        started = time.monotonic()
        written = 0
        while time.monotonic() - started < seconds:
            store.upsert(CCID, [recording(written)])
            written += 1
            time.sleep(max(0.0, started + written / rate - time.monotonic()))
    finally:
        store.close()
    print(f"{written / (time.monotonic() - started):.0f}", flush=True)


if __name__ == "__main__":
    main()
