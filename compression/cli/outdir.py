"""``python -m compression run --out DIR``: refuse a folder that is not ours; on failure, remove
only what the run created."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from compression.errors import UserError


class OutDirError(UserError):
    """``run --out`` names a folder that is not an earlier run of ours."""


def prepare_out_dir(out: str | Path) -> tuple[Path, set[str] | None, Path | None]:
    """Check ``run --out``'s folder before a run; returns what ``undo_out_dir`` needs.

    A missing or empty folder, or one holding an earlier run of ours (``report.json`` or
    ``recipe.json``), is fine; any other non-empty folder raises ``OutDirError``. Returns
    (folder, names already there or None if it did not exist, the topmost folder this
    run will create or None).
    """
    out = Path(out).expanduser().absolute()
    if out.exists():
        if not out.is_dir():
            raise OutDirError(f"--out {out} is a file, not a folder")
        names = set(os.listdir(out))
        if names and not names & {"report.json", "recipe.json"}:
            raise OutDirError(f"--out {out} is not empty and holds no earlier run (no report.json or "
                              "recipe.json); give a new or empty folder")
        return out, names, None
    top = out
    while not top.parent.exists():
        top = top.parent
    return out, None, top


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



__all__ = ["OutDirError", "prepare_out_dir", "undo_out_dir"]
