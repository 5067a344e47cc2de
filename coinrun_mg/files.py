"""Atomic file writes: a reader (or a crash) sees the old file or the new one, never half.

``atomic_write(path, write)`` is the one implementation; ``atomic_write_bytes`` and
``atomic_write_text`` are shorthands.  Light on purpose (standard library only), so that
any module of the package, ``coinrun_mg.agents`` included, can import it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import IO

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text"]


def atomic_write(
    path: str | os.PathLike, write: Callable[[IO], object], *, text: bool = False
) -> None:
    """Write ``path`` through ``write(file)``, atomically.

    ``write`` gets a file open on a new temporary file in the same folder: binary, or
    with ``text=True`` UTF-8 text with newlines written as given (what ``csv`` and
    ``json.dump`` want).  The file is flushed and fsynced, renamed over ``path``
    (``os.replace``) and the folder is fsynced so that the rename itself survives a crash.
    If ``write`` (or anything before the rename) raises, the temporary file is removed and
    ``path`` is untouched.
    """
    path = Path(path)
    # Unique per process and call; O_EXCL never reuses a stranger's file.  Mode 0o666
    # lets the umask decide the permissions, as a plain open() would.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:  # name the file asked for, not the temporary one
        raise type(exc)(exc.errno, exc.strerror, str(path)) from None
    how = {"mode": "w", "encoding": "utf-8", "newline": ""} if text else {"mode": "wb"}
    try:
        with os.fdopen(fd, **how) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write_bytes(path, text.encode(encoding))


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows, where folders cannot be opened; nothing to sync there
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems do not sync folders; the rename is done regardless
        pass
    finally:
        os.close(fd)
