"""Paths a user types (a recipe's ``baseline.path`` and ``dataset.npz``, ``--out``, a file to unpack):
expanded, bounded and printed safely, with one-line errors.

``user_path`` is the one place a typed path becomes a ``Path``: ``~user`` for a user that does not
exist, a NUL byte, a name longer than the system allows are each a ``UserError`` naming the field,
never a RuntimeError or an "cannot write" for a read. ``shown`` is a path as a message may print
it: control characters escaped (no live ANSI sequences) and a very long path shortened.
Standard library only.
"""

from __future__ import annotations

import os
from pathlib import Path

from compression.errors import RecipeError

MAX_PATH_CHARS = 4096  # PATH_MAX on Linux
MAX_NAME_BYTES = 255  # NAME_MAX: one folder or file name
SHOWN_CHARS = 120


class PathError(RecipeError):
    """A typed path that cannot name a file: unknown ~user, NUL byte, too long (``field: message``)."""


def escaped(text) -> str:
    """Text for a terminal or a one-line message: control characters written as escapes."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def shown(path, limit: int = SHOWN_CHARS) -> str:
    """A path as a message prints it: escaped, and shortened in the middle when very long."""
    text = escaped(os.fspath(path) if isinstance(path, os.PathLike) else path)
    if len(text) <= limit:
        return text
    keep = limit // 2 - 2
    return f"{text[:keep]}…{text[-keep:]} ({len(text):,} characters)"


def check_path_text(value, field: str = "") -> str:
    """The text of a path, or PathError when no file could have that name."""
    if not isinstance(value, (str, os.PathLike)):
        raise PathError(field, f"must be a file path (text), not {type(value).__name__}")
    text = os.fspath(value)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if not text:
        raise PathError(field, "the path is empty")
    if "\x00" in text:
        raise PathError(field, f"{shown(text)} holds a NUL character, which no file name can")
    if len(text) > MAX_PATH_CHARS:
        raise PathError(field, f"the path is {len(text):,} characters long; a path may have at most "
                               f"{MAX_PATH_CHARS:,} ({shown(text, 60)})")
    for part in Path(text).parts:
        if len(part.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
            raise PathError(field, f"a name in the path is {len(part):,} characters long; one folder or file "
                                   f"name may have at most {MAX_NAME_BYTES} bytes ({shown(part, 60)})")
    return text


def user_path(value, field: str = "") -> Path:
    """``value`` as a Path with ``~`` expanded; PathError (one line naming ``field``) when it cannot be one."""
    text = check_path_text(value, field)
    try:
        path = Path(text).expanduser()
    except RuntimeError:  # ~nosuchuser
        user = text[1:].split("/", 1)[0]
        raise PathError(field, f"{shown(text)} names the home folder of {escaped(user)!r}, a user this machine "
                               "does not have") from None
    return Path(check_path_text(path, field))


def read_regular_file(path, most: int, what: str = "file") -> bytes:
    """A regular file's first ``most + 1`` bytes at most (the caller says what more than ``most`` means);
    PathError (one line) for anything but a regular file: a device (/dev/zero), a pipe (opened
    without waiting, so never blocks), a folder."""
    import stat

    where = shown(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise PathError("", f"{what} {where} does not exist") from None
    except OSError as e:
        raise PathError("", f"cannot read {what} {where}: {e.strerror or e}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = ("a folder" if stat.S_ISDIR(mode) else "a pipe" if stat.S_ISFIFO(mode) else
                "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")
        raise PathError("", f"{what} {where} is {kind}; only a regular file is read")
    with os.fdopen(fd, "rb") as f:
        chunks, got = [], 0
        try:
            while got <= most:  # in pieces: read(most + 1) would reserve all of ``most`` at once
                chunk = f.read(min(1 << 20, most + 1 - got))
                if not chunk:
                    break
                chunks.append(chunk)
                got += len(chunk)
        except OSError as e:
            raise PathError("", f"cannot read {what} {where}: {e.strerror or e}") from None
        return b"".join(chunks)


__all__ = ["read_regular_file", "PathError", "check_path_text", "escaped", "shown", "user_path", "MAX_PATH_CHARS", "MAX_NAME_BYTES"]
