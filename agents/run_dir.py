"""Run directories are never silently reused.

A new run refuses a directory that already holds a run (a checkpoint, ``config.json``
or TensorBoard event files) unless asked to resume it or to replace it.  Replacing moves
the old run aside to ``<run_dir>.replaced-<UTC time>``; nothing is deleted.  Resuming a
directory without a checkpoint (a run killed before its first one) starts afresh, and
the old run's logs are moved aside the same way, so TensorBoard never mixes two runs.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

CONFIG_NAME = "config.json"
EVENTS_GLOB = "events.out.tfevents.*"
PERIODIC_DIR = "checkpoints"  # keep_checkpoints=True writes checkpoints/step_<N>.pt


class RunDirInUse(ValueError):
    """``run_dir`` holds a run and neither resuming nor replacing it was asked for."""


def run_files(run_dir: Path, checkpoint_name: str) -> list[Path]:
    """The files (and folders) of a run in ``run_dir``: its checkpoints, config and logs."""
    if not run_dir.is_dir():
        return []
    named = [run_dir / checkpoint_name, run_dir / CONFIG_NAME, run_dir / PERIODIC_DIR]
    return [p for p in named if p.exists()] + sorted(run_dir.glob(EVENTS_GLOB))


def prepare_run_dir(
    run_dir: Path, checkpoint_name: str, *, resume: bool, overwrite: bool
) -> Path | None:
    """Make ``run_dir`` ready for a run; returns where an old run was moved, or None.

    Raises :class:`RunDirInUse` (a ``ValueError``) for a used directory without
    ``resume`` or ``overwrite``.  ``overwrite`` moves the whole directory aside;
    ``resume`` without a checkpoint moves only the old run's files aside."""
    check_run_dir(run_dir, checkpoint_name, resume=resume, overwrite=overwrite)
    found = run_files(run_dir, checkpoint_name)
    has_checkpoint = (run_dir / checkpoint_name).exists()
    moved = None
    if found and overwrite:
        moved = _aside_path(run_dir)
        os.replace(run_dir, moved)
    elif found and resume and not has_checkpoint:
        moved = _aside_path(run_dir)
        moved.mkdir()
        for path in found:
            os.replace(path, moved / path.name)
    run_dir.mkdir(parents=True, exist_ok=True)
    return moved


def check_run_dir(run_dir: Path, checkpoint_name: str, *, resume: bool, overwrite: bool) -> None:
    """Raise :class:`RunDirInUse` where :func:`prepare_run_dir` would, changing nothing
    (so that a command can refuse before it announces a run)."""
    found = run_files(run_dir, checkpoint_name)
    if found and not resume and not overwrite:
        names = ", ".join(sorted({_describe(p) for p in found}))
        raise RunDirInUse(
            f"run_dir {run_dir} already holds a run ({names}); use --resume (resume=True) to "
            "continue it or --overwrite (overwrite=True) to move it aside and start afresh"
        )


def _describe(path: Path) -> str:
    return "TensorBoard event files" if path.name.startswith("events.out.") else path.name


def _aside_path(run_dir: Path) -> Path:
    """``<run_dir>.replaced-<UTC time>``, with a counter should that exist already."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    run_dir = run_dir.resolve()  # a name to extend also for "." or "runs/x/"
    base = run_dir.with_name(f"{run_dir.name}.replaced-{stamp}")
    candidate, n = base, 1
    while candidate.exists():
        candidate = base.with_name(f"{base.name}-{n}")
        n += 1
    return candidate
