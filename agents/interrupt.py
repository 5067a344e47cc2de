"""Ctrl-C during training: stop at the end of the iteration, after a checkpoint.

While :func:`~coinrun_mg.agents.train` runs in the main thread, the first SIGINT only
sets a flag; the trainer checks it after each iteration, saves a checkpoint and raises
:class:`TrainingInterrupted`.  A second SIGINT raises ``KeyboardInterrupt`` at once.
``TrainingInterrupted`` is a ``KeyboardInterrupt``, so callers that already stop on
Ctrl-C (sweeps) keep doing so.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from pathlib import Path


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on Ctrl-C after saving ``checkpoint`` at ``global_step``."""

    def __init__(self, checkpoint: Path, global_step: int):
        super().__init__(f"training interrupted at step {global_step}; checkpoint {checkpoint}")
        self.checkpoint = checkpoint
        self.global_step = global_step


class StopOnInterrupt:
    """Between :meth:`install` and :meth:`restore` (or inside ``with``), the first
    Ctrl-C sets :attr:`requested`.

    Outside the main thread (where signal handlers cannot be set), or where SIGINT is
    ignored or handled by someone else, it does nothing and Ctrl-C keeps its effect
    there.  The previous handler comes back on restore.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous = None
        self._installed = False

    def install(self) -> StopOnInterrupt:
        # Only in place of Python's own handler: a process that ignores Ctrl-C (a sweep's
        # worker, whose driver decides what stops) or handles it itself keeps doing so.
        if (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        ):
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def restore(self) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False

    def __enter__(self) -> StopOnInterrupt:
        return self.install()

    def __exit__(self, *exc_info) -> None:
        self.restore()

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        # os.write, not print: the handler may run while the main thread is inside a
        # write to stderr (the progress bar), and buffered writers are not reentrant.
        with contextlib.suppress(OSError):
            os.write(
                2,
                b"\ninterrupted: saving a checkpoint at the end of this iteration "
                b"(Ctrl-C again to stop at once, without one)\n",
            )
