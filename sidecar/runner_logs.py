"""The run's log files in ``<appDirPath>/.dapr/logs/``, named as the Dapr CLI names them.

``dapr run -f`` writes ``<appID>_<app|daprd>_<YYYYMMDDhhmmss>.log`` each run and never removes
one; the local runner keeps the newest few of each app and kind, so the folder stops growing.
"""

from __future__ import annotations

import contextlib
import re
import time
from pathlib import Path
from typing import BinaryIO

#: Log files kept of each app and kind (app, daprd): this run's and the four before it.
KEPT_RUNS = 5
_TAIL_BYTES = 16384


def open_log(app_dir: Path, app_id: str, kind: str) -> BinaryIO:
    """This run's log file of ``kind`` for the app, opened to append; older runs' pruned."""
    folder = app_dir / ".dapr" / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d%H%M%S")
    # Appended, not truncated: a run started in the same second (another runner in the same
    # folder) writes on after it instead of over it.
    log_file = (folder / f"{app_id}_{kind}_{stamp}.log").open("ab")
    prune(folder, app_id, kind)
    return log_file


def prune(folder: Path, app_id: str, kind: str, keep: int = KEPT_RUNS) -> None:
    """Remove all but the newest ``keep`` log files of the app and kind (the names sort by time)."""
    pattern = re.compile(rf"{re.escape(app_id)}_{re.escape(kind)}_\d{{14}}\.log")
    runs = sorted(path for path in folder.iterdir() if pattern.fullmatch(path.name))
    for old in runs[:-keep]:
        with contextlib.suppress(FileNotFoundError):  # another runner pruned it first
            old.unlink()


def tail(path: Path, lines: int) -> list[str]:
    """The last ``lines`` lines of a log file (of its last 16 KiB); none if it cannot be read."""
    try:
        with path.open("rb") as log_file:
            size = log_file.seek(0, 2)
            log_file.seek(max(0, size - _TAIL_BYTES))
            text = log_file.read().decode(errors="replace")
    except OSError:
        return []
    return text.splitlines()[-lines:]
