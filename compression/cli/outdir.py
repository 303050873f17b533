"""``python -m compression run --out DIR``: refuse a folder that is not ours; on failure, remove
only what the run created.

A new or empty folder is written in place. A folder holding an earlier run is not touched while
the new run works: the run writes into a hidden staging folder inside it, whose files replace the
earlier run's only once the run succeeded (``commit_staged``); a run that fails leaves the earlier
run as it was.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from compression.errors import UserError
from compression.inputs.paths import shown, user_path
from compression.recipe.artifacts import all_file_names

STAGE_PREFIX = ".run-"


class OutDirError(UserError):
    """``run --out`` names a folder that is not an earlier run of ours."""


def prepare_out_dir(out: str | Path) -> tuple[Path, set[str] | None, Path | None]:
    """Check ``run --out``'s folder before a run; returns what ``undo_out_dir`` needs.

    A missing or empty folder, or one holding an earlier run of ours (``report.json`` or
    ``recipe.json``), is fine; any other non-empty folder raises ``OutDirError``. Returns
    (folder, names already there or None if it did not exist, the topmost folder this
    run will create or None).
    """
    out = user_path(out, "--out").absolute()
    try:
        if out.exists():
            if not out.is_dir():
                raise OutDirError(f"--out {shown(out)} is a file, not a folder")
            names = set(os.listdir(out))
            if names and not names & {"report.json", "recipe.json"}:
                raise OutDirError(f"--out {shown(out)} is not empty and holds no earlier run (no report.json or "
                                  "recipe.json); give a new or empty folder")
            if names and not os.access(out, os.W_OK | os.X_OK):
                raise OutDirError(f"--out {shown(out)}: cannot write in this folder (permission denied)")
            return out, names, None
        top = out
        while not top.parent.exists():
            top = top.parent
    except OSError as e:  # a name too long for the file system, a folder we may not read
        raise OutDirError(f"--out {shown(out)}: {e.strerror or e}") from None
    return out, None, top


def run_folder(out: Path, before: set[str] | None) -> Path:
    """Where the run writes: ``out`` itself, or a staging folder inside it when it holds an earlier run."""
    if not before:
        return out
    stage = out / f"{STAGE_PREFIX}{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    return stage


def commit_staged(out: Path, stage: Path) -> None:
    """After a successful run in ``stage``: its files replace the earlier run's in ``out``, and the
    earlier run's files the new run did not write go, so the folder holds one run, not a mix."""
    if stage == out:
        return
    written = set(os.listdir(stage))
    for name in sorted(written - {"recipe.json", "report.json"}) + ["recipe.json", "report.json"]:
        if name in written:  # the report last: a folder with a report holds a whole run
            os.replace(stage / name, out / name)
    for name in set(all_file_names().values()) - written:
        path = out / name
        if path.is_file() and not path.is_symlink():
            path.unlink()
    shutil.rmtree(stage, ignore_errors=True)


def undo_out_dir(out: Path, before: set[str] | None, created_top: Path | None) -> None:
    """After a failed run: remove what it created and nothing else."""
    if before is None:
        if created_top is not None:
            shutil.rmtree(created_top, ignore_errors=True)
        return
    try:
        names = set(os.listdir(out))
    except OSError:
        return
    for name in names - before:
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                path.unlink()
            except OSError:
                pass


__all__ = ["OutDirError", "commit_staged", "prepare_out_dir", "run_folder", "undo_out_dir"]
