"""Executors: where the runs of a sweep are carried out.

:func:`coinrun_mg.sweep.run_sweep` decides *which* runs to do (finished runs are skipped,
each seed's fraction-0 reference comes before the runs it filters, failures are retried)
and writes every output.  An executor only carries out the runs it is given, through a
small interface (:class:`Executor`):

* ``open(run_one, out_dir, log)`` - get ready (a Ray connection, ...); ``run_one(job)``
  runs one :class:`RunJob` where it is called and returns the run's result entry, a dict
  with ``"status": "done"`` or ``"failed"`` (it does not raise for a failing run);
* ``submit(job)`` - queue one run;
* ``pending()`` - how many submitted runs have not been returned yet;
* ``next_result()`` - wait for a run to end and return ``(job, entry)``;
* ``close(cancel)`` - stop; ``cancel=True`` (an error or Ctrl-C in the driver) also stops
  the runs still going, whose finished work stays on disk for the next call to resume;

plus ``slots``, how many runs may go at once (read after ``open``), and optionally
``settings()``, what the executor was asked for (recorded in the sweep's report).  An
executor says ``[run] <job.action>`` through ``log`` when a run actually starts (see
:func:`announce_start`); the sweep says ``queued`` when it submits one.

A failed entry says whether a retry could fix the failure (``"retryable"``, see
:func:`_retryable`): a crash, a dead worker or node or a transient error can be retried; a
bad setting or damaged checkpoint (``ValueError``), a missing package (``ImportError``) or
a file-system refusal (no permission, read-only, disk full) cannot.

Two executors:

* :class:`LocalExecutor` - this machine: one run after another in this process
  (``workers=1``), or up to ``workers`` runs at once, each in its own process;
* :class:`RayExecutor` - each run a Ray task with its own resources (CPUs, and a GPU
  when the run's device is CUDA), on a local Ray instance or the cluster at ``address``.

Nothing here imports Ray (or torch) at import time.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import os
import signal
import tempfile
import traceback
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from coinrun_mg.files import atomic_write_bytes

#: Printed when ``executor="ray"`` is asked for without Ray installed.
RAY_MISSING = (
    "the Ray executor needs the ray package, which is not installed; "
    'install it with: pip install "coinrun-mg[ray]"'
)

#: Name of the file by which a Ray worker recognizes the driver's output directory.
TOKEN_NAME = ".ray-shared-fs-token"

#: The checkpoint file of a run (``coinrun_mg.agents.ppo.CHECKPOINT_NAME``, repeated here
#: so that this module does not import torch).
CHECKPOINT_NAME = "checkpoint.pt"


@dataclass(frozen=True)
class RunJob:
    """One ``(fraction, seed)`` run as an executor sees it: everything the process that
    runs it needs, picklable.

    ``run_dir`` and ``reference`` are paths on the driver's machine.  ``reference`` is
    the checkpoint of the reference policy of the good-levels filter (None: unfiltered
    test).  ``attempt`` counts from 1.  ``fail_attempts``: the first that many attempts
    raise on purpose, a crash or, with ``fail_kind="value"``, a permanent ValueError
    (fault injection for tests, see ``coinrun_mg.sweep.FAIL_ENV``).  ``action``: what the
    run does, said when it starts (``"training"``, ``"evaluating again ..."``).
    ``eval_at``: step budgets whose checkpoints the run keeps and evaluates.
    ``eval_backends``: backends the run's agent is also tested on (its ``transfer``).
    """

    fraction: float
    seed: int
    run_dir: str
    config: Any  # coinrun_mg.agents.PPOConfig
    episodes: int
    eval_seed: int
    eval_num_envs: int | None
    device: str
    reference: str | None
    hook: Any = None  # coinrun_mg.sweep.GoalProxyHook | None
    attempt: int = 1
    fail_attempts: int = 0
    fail_kind: str = "crash"
    action: str = "training"
    eval_at: tuple[int, ...] = ()  # step budgets kept and evaluated (coinrun_mg.budgets)
    eval_backends: tuple[str, ...] = ()  # the transfer section's backends (coinrun_mg.transfer)

    @property
    def name(self) -> str:
        """The run's name, ``f{fraction:g}_s{seed}`` (its directory's name)."""
        return Path(self.run_dir).name


RunOne = Callable[[RunJob], dict[str, Any]]
Log = Callable[[str], None]


class Executor(Protocol):
    """What :func:`coinrun_mg.sweep.run_sweep` needs from an executor (module docstring)."""

    slots: int

    def open(self, run_one: RunOne, out_dir: Path, log: Log) -> None: ...

    def submit(self, job: RunJob) -> None: ...

    def pending(self) -> int: ...

    def next_result(self) -> tuple[RunJob, dict[str, Any]]: ...

    def close(self, cancel: bool = False) -> None: ...


def announce_start(log: Log, job: RunJob) -> None:
    """Say that ``job`` starts now (an executor calls it when the run really begins)."""
    again = f" (attempt {job.attempt})" if job.attempt > 1 else ""
    log(f"[{job.name}] {job.action}{again} in {job.run_dir}")


#: OSError numbers that a retry cannot fix: no permission, read-only, disk or quota full.
_PERMANENT_ERRNOS = frozenset(
    {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
)


def _retryable(exc: BaseException | None) -> tuple[bool, str]:
    """Whether trying a run again could fix ``exc``, and if not, why not (one phrase).

    None (a worker process or node that died), crashes and transient errors: yes.  A bad
    setting or a damaged checkpoint (``ValueError``, e.g. ``CheckpointError``), a missing
    package (``ImportError``) or a file-system refusal (no permission, read-only, disk
    full): no, the next attempt would fail the same way.
    """
    if isinstance(exc, ValueError):
        return False, "a bad setting or damaged checkpoint fails the same way again"
    if isinstance(exc, ImportError):
        return False, "a missing package fails the same way again"
    if isinstance(exc, OSError) and exc.errno in _PERMANENT_ERRNOS:
        return False, "no permission, a read-only file system or a full disk fails again"
    return True, ""


def failed_entry(
    job: RunJob, error: str, trace: str, exc: BaseException | None = None
) -> dict[str, Any]:
    """The result entry of a run that failed with ``error`` (one line) and ``trace``;
    ``exc`` (None: the run's process died) decides whether it may be retried."""
    retryable, why = _retryable(exc)
    entry = {
        "rand_fraction": job.fraction,
        "seed": job.seed,
        "status": "failed",
        "run_dir": job.run_dir,
        "error": error,
        "traceback": trace,
        "retryable": retryable,
    }
    if not retryable:
        entry["not_retried"] = f"not retried: {why}"
    return entry


def _exception_entry(job: RunJob, exc: BaseException) -> dict[str, Any]:
    lines = str(exc).strip().splitlines()
    error = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return failed_entry(job, error, trace, exc)


def _check_count(name: str, value: Any, minimum: int, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        none = " or None" if allow_none else ""
        raise ValueError(f"{name}={value!r} is invalid; it must be an int >= {minimum}{none}")


def _check_amount(name: str, value: Any, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and value >= 0
    if not ok:
        none = " or None (automatic)" if allow_none else ""
        raise ValueError(f"{name}={value!r} is invalid; it must be a number >= 0{none}")


def _torch_threads(count: int) -> None:
    import torch

    torch.set_num_threads(max(1, count))


# ======================================================================================
# Local: this process, or one process per run
# ======================================================================================


def _child_main(run_one: RunOne, job: RunJob, conn: Any, threads: int) -> None:
    """A worker process: run one job and send its entry back."""
    # Ctrl-C reaches the whole process group; the driver alone decides what stops (it
    # terminates the children), so a child does not die half-way through a write.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _torch_threads(threads)
    conn.send(run_one(job))
    conn.close()


class LocalExecutor:
    """Runs on this machine: one after another in this process (``workers=1``, the
    default), or up to ``workers`` at once, each in a fresh process started with
    ``spawn`` (torch is not fork-safe) and ``torch_threads`` torch threads (default: the
    CPU count divided by ``workers``).  A process that dies gives a failed run.  As with
    any ``spawn`` start, a script that uses ``workers > 1`` must guard its entry point with
    ``if __name__ == "__main__":`` (the worker processes import the main module).
    """

    def __init__(self, workers: int = 1, torch_threads: int | None = None):
        _check_count("workers", workers, 1)
        _check_count("torch_threads", torch_threads, 1, allow_none=True)
        self.workers = workers
        self.slots = workers
        self.torch_threads = torch_threads or max(1, (os.cpu_count() or 1) // workers)
        self._queue: deque[RunJob] = deque()
        self._running: dict[Any, tuple[Any, RunJob]] = {}  # connection -> (process, job)
        self._run_one: RunOne | None = None
        self._log: Log = lambda _msg: None

    def settings(self) -> dict[str, Any]:
        """What this executor runs with, for the sweep's report."""
        # One worker runs in the caller's process, on the caller's torch threads.
        threads = self.torch_threads if self.workers > 1 else None
        return {"name": "local", "workers": self.workers, "torch_threads_per_run": threads}

    def open(self, run_one: RunOne, out_dir: Path, log: Log) -> None:
        del out_dir
        self._run_one = run_one
        self._log = log
        if self.workers > 1:
            threads = self.torch_threads
            log(f"local: up to {self.workers} runs at once, {threads} torch threads each")

    def submit(self, job: RunJob) -> None:
        self._queue.append(job)

    def pending(self) -> int:
        return len(self._queue) + len(self._running)

    def next_result(self) -> tuple[RunJob, dict[str, Any]]:
        assert self._run_one is not None, "open() first"
        if self.workers == 1:
            # In this process: what the caller set up (torch threads, patches) applies.
            job = self._queue.popleft()
            announce_start(self._log, job)
            return job, self._run_one(job)
        self._start_waiting()
        from multiprocessing.connection import wait

        conn = wait(list(self._running))[0]
        process, job = self._running.pop(conn)
        try:
            entry = conn.recv()
        except (EOFError, OSError):  # the process died before sending its result
            process.join()
            entry = failed_entry(
                job, f"WorkerDied: the run's process exited with code {process.exitcode}", ""
            )
        conn.close()
        process.join()
        self._start_waiting()
        return job, entry

    def _start_waiting(self) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        while self._queue and len(self._running) < self.workers:
            job = self._queue.popleft()
            receiver, sender = context.Pipe(duplex=False)
            process = context.Process(
                target=_child_main,
                args=(self._run_one, job, sender, self.torch_threads),
                name=f"coinrun-mg {job.name}",
            )
            process.start()
            sender.close()  # the child holds the only sending end: its death reads as EOF
            self._running[receiver] = (process, job)
            announce_start(self._log, job)

    def close(self, cancel: bool = False) -> None:
        self._queue.clear()
        for conn, (process, _job) in list(self._running.items()):
            if cancel:
                process.terminate()
            process.join()
            conn.close()
        self._running.clear()


# ======================================================================================
# Ray
# ======================================================================================


def ray_available() -> bool:
    """Whether the ``ray`` package can be imported (without importing it)."""
    return importlib.util.find_spec("ray") is not None


def _same_filesystem(token_path: str, token: str) -> bool:
    try:
        return Path(token_path).read_text() == token
    except OSError:
        return False


def _safe_relative(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise ValueError(f"refusing to write the run file {name!r} outside the run directory")
    return path


def write_run_files(run_dir: Path, files: dict[str, bytes]) -> None:
    """Write a run's files (relative path -> content), each atomically, into ``run_dir``."""
    for name, data in files.items():
        path = run_dir / _safe_relative(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, data)


def _run_shipped(run_one: RunOne, job: RunJob, payload: dict[str, Any]) -> dict[str, Any]:
    """Run ``job`` in a scratch directory on a node that cannot see the driver's files:
    the driver's checkpoint (to resume) and reference come in ``payload`` (Ray object
    refs), the run's files go back in the entry's ``"_files"``."""
    import ray

    own_reference = job.reference is not None and Path(job.reference) == (
        Path(job.run_dir) / CHECKPOINT_NAME
    )
    with tempfile.TemporaryDirectory(prefix="coinrun-mg-run-") as scratch:
        run_dir = Path(scratch) / job.name
        run_dir.mkdir()
        if payload.get("checkpoint") is not None:
            (run_dir / CHECKPOINT_NAME).write_bytes(ray.get(payload["checkpoint"]))
        # Budget checkpoints kept by an earlier attempt: a resumed run needs them.
        write_run_files(run_dir, {k: ray.get(v) for k, v in payload.get("kept", {}).items()})
        reference = None
        if own_reference:
            reference = run_dir / CHECKPOINT_NAME
        elif job.reference is not None:
            if payload.get("reference") is None:
                raise FileNotFoundError(f"the reference checkpoint {job.reference} is missing")
            reference = Path(scratch) / "reference.pt"
            reference.write_bytes(ray.get(payload["reference"]))
        local = replace(job, run_dir=str(run_dir), reference=str(reference) if reference else None)
        entry = run_one(local)
        # Also after a failure: a periodic checkpoint lets the retry resume.
        entry["_files"] = {
            path.relative_to(run_dir).as_posix(): path.read_bytes()
            for path in sorted(run_dir.rglob("*"))
            if path.is_file()
        }
    # The entry names the driver's paths, where the driver writes the files.
    entry["run_dir"] = job.run_dir
    if entry.get("checkpoint") is not None:
        entry["checkpoint"] = str(Path(job.run_dir) / CHECKPOINT_NAME)
    if entry.get("reference") is not None:
        entry["reference"] = job.reference
    return entry


def _ray_task(
    run_one: RunOne,
    job: RunJob,
    token_path: str,
    token: str,
    shared_fs: bool | None,
    payload: dict[str, Any],
    threads: int,
) -> dict[str, Any]:
    """The body of a run's Ray task, on whichever node Ray chose."""
    try:
        _torch_threads(threads)
        if shared_fs is None:
            shared_fs = _same_filesystem(token_path, token)
        if shared_fs:
            return run_one(job)  # writes into the driver's run directory itself
        return _run_shipped(run_one, job, payload)
    except Exception as exc:
        return _exception_entry(job, exc)


class RayExecutor:
    """Each run is a Ray task, on a local Ray instance or the cluster at ``address``.

    ``address``: a running cluster (``"auto"``, ``"HOST:6379"``, ``"ray://HOST:10001"``);
    None starts a local instance with ``num_cpus`` CPUs (None: all of them) that is shut
    down at the end.  A driver already connected (``ray.init`` called before) is used as
    it is and left running.

    Resources per run: ``cpus_per_run`` CPUs (also the run's torch threads) and
    ``gpus_per_run`` GPUs; None (the default) asks for one GPU when the run's device is
    ``"cuda"`` / ``"cuda:N"``, or ``"auto"`` on a cluster that has GPUs (``--device cpu``
    keeps runs off them), and none otherwise.  A GPU run gets a fresh worker process,
    so its GPU memory is given back when it ends.

    Files: a worker that sees the driver's output directory (a shared filesystem, or
    the driver's own machine) trains in the run's directory there; one that does not
    trains in a scratch directory, gets the run's checkpoint (to resume) and its
    reference checkpoint through Ray, and sends the run's files back, which the driver
    writes into the run's directory.  ``shared_fs=None`` (default) tells them apart by a
    token file the driver writes into the output directory; True / False forces it.

    Ray's own task retries are off: a run that raises or whose worker or node dies is
    retried by the sweep (``retries``), the same way for every executor.

    Ray decides when a task starts; the executor says a run starts (``[run] training``)
    when one of its ``slots`` is free for it: at once when fewer runs are out, else when
    an earlier run ends.
    """

    def __init__(
        self,
        address: str | None = None,
        num_cpus: int | None = None,
        cpus_per_run: float = 1,
        gpus_per_run: float | None = None,
        shared_fs: bool | None = None,
    ):
        if address is not None and (not isinstance(address, str) or not address):
            raise ValueError(
                f"address={address!r} is invalid; give a Ray address such as 'auto', "
                "'HOST:6379' or 'ray://HOST:10001', or None for a local instance"
            )
        _check_count("num_cpus", num_cpus, 1, allow_none=True)
        _check_amount("cpus_per_run", cpus_per_run)
        _check_amount("gpus_per_run", gpus_per_run, allow_none=True)
        if shared_fs not in (None, True, False):
            raise ValueError(f"shared_fs={shared_fs!r} is invalid; use None, True or False")
        if not ray_available():
            raise ImportError(RAY_MISSING)
        self.address = address
        self.num_cpus = num_cpus
        self.cpus_per_run = cpus_per_run
        self.gpus_per_run = gpus_per_run
        self.shared_fs = shared_fs
        self.slots = 1
        self._started = False
        self._running: dict[Any, RunJob] = {}
        self._put_cache: dict[tuple[str, int], Any] = {}
        self._announced = False
        self._not_started: deque[RunJob] = deque()  # submitted, waiting for a free slot

    def settings(self) -> dict[str, Any]:
        """What this executor runs with, for the sweep's report."""
        return {
            "name": "ray",
            "address": self.address,
            "num_cpus": self.num_cpus,
            "cpus_per_run": self.cpus_per_run,
            "gpus_per_run": self.gpus_per_run,
            "shared_fs": self.shared_fs,
        }

    # --- set-up ---------------------------------------------------------------------

    def open(self, run_one: RunOne, out_dir: Path, log: Log) -> None:
        import ray

        self._log = log
        if not ray.is_initialized():
            if self.address is not None:
                ray.init(address=self.address)
            else:
                ray.init(num_cpus=self.num_cpus, include_dashboard=False)
            self._started = True
        resources = ray.cluster_resources()
        self._cluster_cpus = resources.get("CPU", 0.0)
        self._cluster_gpus = resources.get("GPU", 0.0)
        where = f"the cluster at {self.address}" if self.address else "a local Ray instance"
        if not self._started:
            where = "the Ray instance this process is connected to"
        log(f"ray: {where} with {self._cluster_cpus:g} CPUs and {self._cluster_gpus:g} GPUs")
        if self.cpus_per_run > 0:
            self.slots = max(1, int(self._cluster_cpus // self.cpus_per_run))
        else:
            self.slots = 1 << 16
        self._run_one = run_one
        self._cpu_task = ray.remote(_ray_task)
        # max_calls=1: a GPU run's worker process exits afterwards, freeing GPU memory.
        self._gpu_task = ray.remote(max_calls=1)(_ray_task)
        self._token = uuid.uuid4().hex
        self._token_path = Path(out_dir).resolve() / TOKEN_NAME
        self._token_path.write_text(self._token)

    def _gpus_for(self, job: RunJob) -> float:
        if self.gpus_per_run is not None:
            return self.gpus_per_run
        if job.device.startswith("cuda"):
            return 1
        return 1 if job.device == "auto" and self._cluster_gpus > 0 else 0

    def _put_file(self, path: Path) -> Any:
        """The file's bytes in Ray's object store (once per version of the file)."""
        import ray

        if not path.is_file():
            return None
        key = (str(path), path.stat().st_mtime_ns)
        if key not in self._put_cache:
            self._put_cache[key] = ray.put(path.read_bytes())
        return self._put_cache[key]

    # --- the interface ----------------------------------------------------------------

    def submit(self, job: RunJob) -> None:
        gpus = self._gpus_for(job)
        if gpus > self._cluster_gpus:
            message = (
                f"each run asks for {gpus:g} GPU(s) (device={job.device!r}, "
                f"gpus_per_run={self.gpus_per_run!r}) but the Ray cluster has "
                f"{self._cluster_gpus:g}"
            )
            if self.address is None:  # a local instance never grows: the run would hang
                raise ValueError(f"{message}; use device 'cpu' or gpus_per_run=0")
            if not self._announced:
                self._log(f"ray: warning: {message}; runs wait until such a node joins")
        if not self._announced:
            self._log(f"ray: each run asks for {self.cpus_per_run:g} CPU(s), {gpus:g} GPU(s)")
            self._announced = True
        payload: dict[str, Any] = {}
        if self.shared_fs is not True:  # fetched by the worker only if it cannot see them
            payload["checkpoint"] = self._put_file(Path(job.run_dir) / CHECKPOINT_NAME)
            if job.reference is not None:
                payload["reference"] = self._put_file(Path(job.reference))
            if job.eval_at:
                kept = sorted((Path(job.run_dir) / "checkpoints").glob("step_*.pt"))
                payload["kept"] = {f"checkpoints/{p.name}": self._put_file(p) for p in kept}
        task = self._gpu_task if gpus > 0 else self._cpu_task
        ref = task.options(
            num_cpus=self.cpus_per_run,
            num_gpus=gpus,
            max_retries=0,
            name=f"coinrun-mg {job.name}",
        ).remote(
            self._run_one,
            # Absolute paths: a worker's working directory is not the driver's.
            replace(
                job,
                run_dir=str(Path(job.run_dir).resolve()),
                reference=str(Path(job.reference).resolve()) if job.reference else None,
            ),
            str(self._token_path),
            self._token,
            self.shared_fs,
            payload,
            max(1, int(self.cpus_per_run)),
        )
        if len(self._running) < self.slots:
            announce_start(self._log, job)
        else:
            self._not_started.append(job)
        self._running[ref] = job

    def pending(self) -> int:
        return len(self._running)

    def next_result(self) -> tuple[RunJob, dict[str, Any]]:
        import ray

        ready, _ = ray.wait(list(self._running), num_returns=1)
        job = self._running.pop(ready[0])
        if job in self._not_started:
            self._not_started.remove(job)  # Ray started it before an earlier run ended
        elif self._not_started:
            announce_start(self._log, self._not_started.popleft())  # the slot it frees
        try:
            entry = ray.get(ready[0])
        except Exception as exc:  # the worker or its node died, or Ray failed the task
            return job, _exception_entry(job, exc)
        files = entry.pop("_files", None)
        if files:
            write_run_files(Path(job.run_dir), files)
        return job, entry

    def close(self, cancel: bool = False) -> None:
        import ray

        if cancel and ray.is_initialized():
            for ref in self._running:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
        self._running.clear()
        self._not_started.clear()
        self._put_cache.clear()
        if getattr(self, "_token_path", None) is not None:
            self._token_path.unlink(missing_ok=True)
        if self._started:
            ray.shutdown()
            self._started = False


def make_executor(
    name: str,
    workers: int | None = None,
    address: str | None = None,
    cpus_per_run: float | None = None,
    gpus_per_run: float | None = None,
) -> LocalExecutor | RayExecutor:
    """An executor by name: ``"local"`` (``workers`` runs at once, default 1) or
    ``"ray"`` (a local instance sized for ``workers`` runs, default all CPUs, or the
    cluster at ``address``; see :class:`RayExecutor`)."""
    if name == "local":
        if address is not None:
            raise ValueError(
                f"address={address!r} needs executor='ray'; the local executor has no address"
            )
        if gpus_per_run is not None:
            raise ValueError(f"gpus_per_run={gpus_per_run!r} needs executor='ray'")
        threads = None if cpus_per_run is None else max(1, int(cpus_per_run))
        return LocalExecutor(1 if workers is None else workers, torch_threads=threads)
    if name == "ray":
        _check_count("workers", workers, 1, allow_none=True)
        _check_amount("cpus_per_run", cpus_per_run, allow_none=True)
        cpus = 1 if cpus_per_run is None else cpus_per_run
        if workers is not None and address is not None:
            raise ValueError(
                f"workers={workers!r} sizes a local Ray instance; with address={address!r} "
                "the cluster's resources decide how many runs go at once"
            )
        num_cpus = None
        if workers is not None:
            num_cpus = max(1, int(round(workers * max(cpus, 1))))
        return RayExecutor(address, num_cpus, cpus, gpus_per_run)
    raise ValueError(f"executor={name!r} is invalid; accepted values are ('local', 'ray')")


__all__ = [
    "RAY_MISSING",
    "Executor",
    "LocalExecutor",
    "RayExecutor",
    "RunJob",
    "failed_entry",
    "make_executor",
    "ray_available",
    "write_run_files",
]
