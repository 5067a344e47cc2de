"""One sweep at a time per output folder, and a folder that can be written.

:func:`locked` holds an exclusive lock on ``out_dir/.sweep.lock`` (``fcntl.flock``, which
the system drops when the process ends, however it ends) while a sweep runs; the file
names the holder (pid, host, start time, command).  A second sweep into the same folder
raises :class:`SweepError` at once, naming the holder; a lock file left by a sweep that
was killed is not locked any more and is taken over.  :func:`check_writable` checks the
folder for writing before any run starts (``out_dir/runs`` created, a probe file written
and removed), so an unwritable folder fails once, with :class:`SweepError`, instead of
failing every run.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

LOCK_NAME = ".sweep.lock"


class SweepError(Exception):
    """A sweep that cannot start: its output folder is held by another sweep, or cannot be
    written.  The message is one line for the user."""


def check_writable(out_dir: Path) -> None:
    """Create ``out_dir/runs`` and write and remove a probe file in it and in ``out_dir``:
    an unwritable folder fails here, once, before any training."""
    try:
        runs = out_dir / "runs"
        runs.mkdir(parents=True, exist_ok=True)
        for folder in (out_dir, runs):
            probe = folder / f".write-probe-{os.getpid()}"
            with open(probe, "w") as f:
                f.write("probe\n")
                f.flush()
                os.fsync(f.fileno())
            probe.unlink()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if exc.filename is not None:
            reason += f" ({exc.filename})"
        raise SweepError(f"cannot write to {out_dir}: {reason}") from exc


def _holder_text(holder: dict[str, Any] | None) -> str:
    """The lock holder in words: ``pid 123 on host, since 2026-01-02 10:00:00 UTC``."""
    if not holder:
        return "holder not yet recorded"
    since = holder.get("since")
    when = ""
    if isinstance(since, (int, float)):
        stamp = datetime.datetime.fromtimestamp(since, datetime.timezone.utc)
        when = f", since {stamp:%Y-%m-%d %H:%M:%S} UTC"
    command = holder.get("command")
    said = f": {command}" if command else ""
    return f"pid {holder.get('pid')} on {holder.get('host')}{when}{said}"


def _read_holder(fd: int) -> dict[str, Any] | None:
    try:
        data = json.loads(os.pread(fd, 1 << 16, 0).decode() or "null")
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _acquire_lock(out_dir: Path, say: Callable[[str], None]) -> int:
    """Lock ``out_dir`` for this sweep (see the module docstring); the open lock file's
    descriptor, kept open while it holds the lock.  :class:`SweepError` if it is held."""
    import fcntl

    path = out_dir / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise SweepError(
                f"{out_dir} is in use by another sweep ({_holder_text(holder)}); wait for it "
                "to end or choose another output folder"
            ) from None
        except OSError as exc:  # a file system without locks
            os.close(fd)
            raise SweepError(
                f"cannot lock {path}: {exc.strerror or exc}; use an output folder on a file "
                "system that supports locks"
            ) from exc
        # The holder may have removed the file between our open and our flock: the lock
        # counts only on the file that is at the path now.
        try:
            current = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            current = False
        if current:
            break
        os.close(fd)
    stale = _read_holder(fd)
    if stale:  # its sweep was killed without releasing it: the system dropped its flock
        say(f"sweep: taking over the lock of a sweep that is gone ({_holder_text(stale)})")
    holder = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": time.time(),
        "command": " ".join(sys.argv),
    }
    data = (json.dumps(holder) + "\n").encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
    os.fsync(fd)
    return fd


@contextlib.contextmanager
def locked(out_dir: Path, say: Callable[[str], None]) -> Iterator[None]:
    """Hold the lock of ``out_dir`` (:func:`_acquire_lock`) for the block; on the way out
    remove the lock file while still holding it, then let go."""
    fd = _acquire_lock(out_dir, say)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(out_dir / LOCK_NAME)
        os.close(fd)  # drops the flock
