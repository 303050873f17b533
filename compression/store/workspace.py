"""The workspace on disk: where it is, and how files in it are written and read.

``$COMPRESSION_HOME`` (default ``~/.compression``) holds the job queue database
(``queue.db``), the embedded worker's lock, pid and log files, and one folder per run
under ``runs/<job id>/``.

Every file a reader may look at while a writer works is written atomically: the text
goes to a temporary file in the same folder, which then replaces the target with
``os.replace`` (a rename, atomic on POSIX file systems, NFS included). A reader sees the
old file or the new one, never half of one.

It also holds the two helpers every writer shares: ``locked`` (an ``flock`` that never
creates a missing folder, so a run folder deleted under a job is not brought back) and
``resolve_recipe_paths`` (relative file names in a recipe, for ``submit`` and ``run``).

Standard library only (plus the TF-free recipe module): the dashboard, the CLI and the
worker all import this.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import secrets
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from compression.errors import RecipeError

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
    """The workspace's ``runs/`` folder; never created here (a reader creates nothing: ``home_dir``
    creates it for a writer)."""
    return home_dir(home, create=False) / "runs"


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


def json_problem(path: str | os.PathLike) -> tuple[Any, str | None]:
    """(content, None), or (None, one line saying what is wrong with the file): the one JSON reader.

    Files written with ``atomic_write_json`` are always whole, so a file that does not parse was
    damaged or written by something else; it is reported, never retried or raised.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, f"{path.name} is missing"
    except (OSError, UnicodeDecodeError) as e:
        return None, f"{path.name} cannot be read ({type(e).__name__}: {e})".splitlines()[0]
    try:
        return json.loads(text), None
    except ValueError as e:
        return None, f"{path.name} is not valid JSON ({e})".splitlines()[0]


def read_json(path: str | os.PathLike) -> Any | None:
    """The JSON content of ``path``, or None when it is missing, unreadable or not JSON."""
    return json_problem(path)[0]


def append_text(path: str | os.PathLike, text: str) -> None:
    """Append to an existing folder's log file (one ``write`` call, opened in append mode).

    Never creates the folder: a log line for a deleted run folder raises FileNotFoundError.
    """
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)


# --- locks ------------------------------------------------------------------------------


class LockTimeout(TimeoutError):
    """A lock stayed held by someone else for the whole timeout."""


def try_flock(path: str | os.PathLike, create: bool = True) -> int | None:
    """An open fd holding an exclusive ``flock`` on ``path``, or None if another holds it.

    Never creates a missing folder (``FileNotFoundError``); with ``create=False`` a missing
    file raises ``FileNotFoundError`` too. Release with ``os.close(fd)``.
    """
    flags = os.O_RDWR | (os.O_CREAT if create else 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return None
        raise
    return fd


@contextlib.contextmanager
def locked(path: str | os.PathLike, timeout_s: float = 30, poll_s: float = 0.01) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing, its folder never).

    Works between threads of one process as between processes (each call opens its own
    file description). Raises ``LockTimeout`` after ``timeout_s`` seconds and
    ``FileNotFoundError`` when the folder is gone.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        fd = try_flock(path)
        if fd is not None:
            break
        if time.monotonic() >= deadline:
            raise LockTimeout(f"{path} stayed locked for {timeout_s:.0f} s")
        time.sleep(poll_s)
    try:
        yield
    finally:
        os.close(fd)


# --- recipe paths -----------------------------------------------------------------------


def resolve_recipe_paths(recipe, base_dir: str | os.PathLike | None = None):
    """The recipe with relative ``dataset.npz`` / ``baseline.path`` made absolute, checked to exist.

    A relative name is taken relative to ``base_dir`` (the recipe file's folder; default
    the current folder), else to the current folder when the file is there instead. A
    missing file raises ``RecipeError`` naming the field. ``submit`` and
    ``python -m compression run`` both call this.
    """
    from compression.inputs.paths import shown, user_path

    base = user_path(base_dir or os.getcwd(), "recipe folder").absolute()

    def fix(value: str, field: str) -> str:
        path = user_path(value, field)
        try:
            if not path.is_absolute():
                candidate = base / path
                path = candidate if candidate.exists() or not path.exists() else path
            path = path.absolute()
            problem = (None if path.is_file() else "does not exist" if not path.exists() else
                       "is a folder, not a file" if path.is_dir() else "is not a regular file (a device or a pipe?)")
        except OSError as e:  # e.g. a name too long for this file system
            raise RecipeError(field, f"{shown(path)} cannot be read: {e.strerror or e}") from None
        if problem:
            raise RecipeError(field, f"{shown(path)} {problem}")
        return str(path)

    changes: dict[str, Any] = {}
    if recipe.dataset.npz:
        changes["dataset"] = replace(recipe.dataset, npz=fix(recipe.dataset.npz, "dataset.npz"))
    if recipe.baseline.path:
        changes["baseline"] = replace(recipe.baseline, path=fix(recipe.baseline.path, "baseline.path"))
    return replace(recipe, **changes) if changes else recipe


__all__ = [
    "DEFAULT_HOME",
    "HOME_ENV",
    "LockTimeout",
    "append_text",
    "atomic_write_json",
    "atomic_write_text",
    "home_dir",
    "is_job_id",
    "locked",
    "new_job_id",
    "now_iso",
    "parse_iso",
    "json_problem",
    "read_json",
    "resolve_recipe_paths",
    "run_dir",
    "runs_dir",
    "try_flock",
]
