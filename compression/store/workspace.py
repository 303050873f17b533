"""The workspace on disk: where it is, and how files in it are written and read.

``$COMPRESSION_HOME`` (default ``~/.compression``) holds the job queue database
(``queue.db``), the embedded worker's lock, pid and log files, and one folder per run
under ``runs/<job id>/``.

Every file a reader may look at while a writer works is written atomically: the text
goes to a temporary file in the same folder, which then replaces the target with
``os.replace`` (a rename, atomic on POSIX file systems, NFS included). A reader sees the
old file or the new one, never half of one.

Standard library only: the dashboard, the CLI and the worker all import this.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HOME_ENV = "COMPRESSION_HOME"
DEFAULT_HOME = "~/.compression"

JOB_ID_RE = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{6}$")


# --- places ---------------------------------------------------------------------------


def home_dir(home: str | os.PathLike | None = None, create: bool = True) -> Path:
    """The workspace: ``home`` if given, else ``$COMPRESSION_HOME``, else ``~/.compression``.

    Always absolute, so paths recorded from it stay valid whatever the current directory.
    """
    raw = home if home is not None else (os.environ.get(HOME_ENV) or DEFAULT_HOME)
    path = Path(raw).expanduser().absolute()
    if create:
        (path / "runs").mkdir(parents=True, exist_ok=True)
    return path


def runs_dir(home: str | os.PathLike | None = None) -> Path:
    return home_dir(home) / "runs"


def run_dir(job_id: str, home: str | os.PathLike | None = None) -> Path:
    """The run folder of ``job_id`` (not checked for existence). Rejects malformed ids."""
    if not is_job_id(job_id):
        raise ValueError(f"{job_id!r} is not a job id (expected e.g. 20260101-120000-a1b2c3)")
    return runs_dir(home) / job_id


def is_job_id(text: str) -> bool:
    return isinstance(text, str) and bool(JOB_ID_RE.match(text))


def new_job_id(now: float | None = None) -> str:
    """Sortable by submit time: ``YYYYMMDD-HHMMSS-<6 hex>`` (UTC)."""
    stamp = datetime.fromtimestamp(time.time() if now is None else now, timezone.utc)
    return f"{stamp:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


# --- time -----------------------------------------------------------------------------


def now_iso() -> str:
    """Current UTC time, ISO-8601 with milliseconds and an explicit offset."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def parse_iso(text: str | None) -> float | None:
    """Seconds since the epoch of an ISO-8601 time written by ``now_iso`` (None stays None)."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except (TypeError, ValueError):
        return None


# --- atomic files -----------------------------------------------------------------------


def atomic_write_text(path: str | os.PathLike, text: str, fsync: bool = False) -> None:
    """Write ``text`` to ``path`` so that readers never see a partial file.

    ``fsync=True`` also flushes the data to the disk before the rename, for records
    that must survive a power cut (terminal job states); progress writes skip it.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_json(path: str | os.PathLike, data: Any, fsync: bool = False) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n", fsync=fsync)


def read_json(path: str | os.PathLike, default: Any = None) -> Any:
    """The JSON in ``path``, or ``default`` when the file does not exist.

    Files written with ``atomic_write_json`` are always whole. A file that does not parse
    (written by hand, or by something else) is retried briefly, then reported with a
    ``ValueError`` naming the file.
    """
    path = Path(path)
    for attempt in range(3):
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return default
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            if attempt == 2:
                raise ValueError(f"{path} is not valid JSON: {e.msg} at line {e.lineno}") from None
            time.sleep(0.05)
    return default  # pragma: no cover


def append_text(path: str | os.PathLike, text: str) -> None:
    """Append to a log file (one ``write`` call, opened in append mode)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)


__all__ = [
    "DEFAULT_HOME",
    "HOME_ENV",
    "append_text",
    "atomic_write_json",
    "atomic_write_text",
    "home_dir",
    "is_job_id",
    "new_job_id",
    "now_iso",
    "parse_iso",
    "read_json",
    "run_dir",
    "runs_dir",
]
