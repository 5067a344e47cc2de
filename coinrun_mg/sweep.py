"""Sweeps over training fractions and seeds: train, evaluate, aggregate, plot.

``run_sweep(fractions, seeds, profile, out_dir)`` trains one PPO agent per
``(rand_fraction, seed)`` pair, each in ``out_dir/runs/f{fraction}_s{seed}/``, and
evaluates it:

* ``train``    - the training configuration (``rand_fraction`` = the run's fraction,
  ``end_terminates=False``); its ``coin_rate`` is the evaluation's goal rate (the coin
  collected before the original end was touched);
* ``test``     - the test configuration (every coin moved, ``end_terminates=True``) on
  the paper's good levels: the fraction-0 agent of the same seed is the reference policy
  (see :mod:`coinrun_mg.eval`).  Without one (fraction 0 not in the sweep, or its run
  failed) ``test`` is unfiltered and the run says ``"filtered": false``;
* ``test_all`` - the test configuration on every level.

Where the runs go is the executor's business (:mod:`coinrun_mg.executors`): one after
another in this process (the default), several local processes, or Ray tasks on a local
instance or a cluster.  Everything else is done here, the same for every executor: which
runs to do, their order, retries, the ``result.json`` markers and the outputs.  One after
another, the runs of a seed go fraction 0 first, so the reference exists when needed;
side by side, the other fractions do not wait for it: they are evaluated unfiltered
first and again on the good levels once it exists.

Resumable: a run that finished (trained and evaluated) leaves ``result.json`` in its
directory, written atomically; the next call reads it instead of redoing the run.  It
is redone when its settings changed (its PPOConfig, ``episodes``, ``eval_seed`` or
``eval_at``):
training resumes from its checkpoint, so a larger ``total_steps`` extends the run and a
change that :func:`~coinrun_mg.agents.train` cannot resume with fails that run with a
message; a run evaluated without a reference that now exists is evaluated again.
Training also resumes from the run's checkpoint after a kill or Ctrl-C.  Finished runs
need no checkpoint to stay finished, nor to serve as a reference: the other runs of a seed
take their good levels from the fraction-0 run's episode files when they can, so a sweep
whose ``result.json`` and CSV files were kept (committed) without its checkpoints goes on
from them.  A run that
raises (or whose process or node dies) is tried again up to ``retries`` times, then
recorded as failed (with the error) while the sweep goes on; the next call tries it again.
Only failures a retry can fix are retried (a crash, a dead worker or node, a transient
error); a bad setting or damaged checkpoint (``ValueError``), a missing package or a
file-system refusal (no permission, read-only, disk full) is recorded at once, with
``"not_retried"`` saying why (see :mod:`coinrun_mg.executors`).

One sweep at a time per output folder: ``run_sweep`` holds ``out_dir/.sweep.lock`` from
before the first run until the outputs are written, and checks the folder for writing
before any run starts; a second sweep into the same folder, or an unwritable folder,
raises :class:`SweepError` at once (see :mod:`coinrun_mg.sweep_lock`).

Outputs in ``out_dir``: ``report.json`` (runs, per-fraction aggregates across seeds, the
sweep's settings), ``episodes.csv`` (every test episode of every run) and ``curve.png``
(the misgeneralization curve); the aggregates, their intervals and levels, the table and
the curve are made by :mod:`coinrun_mg.sweep_report`.  With ``eval_at`` (step budgets),
each run also keeps and evaluates a checkpoint per budget, and the report gains
``budgets`` per run and ``budget_aggregate``, next to ``budget_episodes.csv`` and
``budget_curve.png`` (see :mod:`coinrun_mg.budgets`).  With ``eval_backends`` (e.g.
native and procgen), each run's agent is also tested on those backends of its game (same
level seeds, good levels from the reference run there): runs gain ``transfer``, the
report a ``transfer`` section next to ``transfer_episodes.csv`` (see
:mod:`coinrun_mg.transfer`).

:class:`GoalProxyHook` is the training hook that logs ``eval/goal_rate``,
``eval/proxy_rate``, ``eval/died_rate``, ``eval/timeout_rate`` (test configuration) and
``eval/train_coin_rate`` (training configuration) to TensorBoard during training.
"""

from __future__ import annotations

import json
import numbers
import os
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from coinrun_mg.agents.ppo import CHECKPOINT_NAME, TrainingHook
from coinrun_mg.eval import GOAL_PROXY_KEYS, all_levels, evaluate, goal_proxy_rates
from coinrun_mg.executors import Executor, RunJob, failed_entry, make_executor
from coinrun_mg.files import atomic_write_text
from coinrun_mg.sweep_lock import SweepError, check_writable, locked
from coinrun_mg.sweep_report import (
    CSV_NAME,
    EPISODES_CSV,
    PLOT_NAME,
    RESULT_NAME,
    aggregate,
    format_table,
    interval_label,
    levels_label,
    plot_curve,
    read_json,
    recorded_good_levels,
    run_name,
    table_note,
    write_episodes_csv,
)
from coinrun_mg.transfer import (
    TRANSFER_CSV,
    _transfer,
    aggregate_transfer,
    check_eval_backends,
    write_transfer_episodes,
)

REPORT_NAME = "report.json"

#: Default first seed key of evaluations (episode i uses key eval_seed + i).
EVAL_SEED = 1_000_000

#: Fault injection, for testing retries in any executor: ``"f0.5_s0:1,f0_s1"`` makes the
#: first attempt of run f0.5_s0 and of run f0_s1 raise (``NAME:N``: the first N) a crash
#: (RuntimeError, retryable); ``NAME:N:value`` raises a ValueError instead (permanent, not
#: retried).  Read by the driver and carried in each job, so it reaches worker processes
#: and Ray nodes.
FAIL_ENV = "COINRUN_MG_SWEEP_FAIL"
FAIL_KINDS = {"crash": RuntimeError, "value": ValueError}


# ======================================================================================
# The training hook
# ======================================================================================


class GoalProxyHook(TrainingHook):
    """Logs goal / proxy / died / timeout rates (test configuration) and the coin rate in
    the training configuration while training.

    Each call evaluates the live policy twice with :func:`coinrun_mg.eval.evaluate`:
    ``episodes`` test levels (``rand_fraction=1``, ``end_terminates=True``) and
    ``episodes`` levels of the training configuration (the run's ``rand_fraction``,
    ``end_terminates=False``; the coin rate is that evaluation's goal rate).  Level keys
    start at ``seed``; the evaluations fork the global RNG, so training is unaffected.
    ``every_steps=None`` uses the config's ``eval_every`` (0: only after the last
    iteration).
    """

    KEYS = GOAL_PROXY_KEYS

    def __init__(
        self,
        episodes: int = 256,
        every_steps: int | None = None,
        seed: int = EVAL_SEED,
        num_envs: int | None = None,
    ):
        if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
            raise ValueError(f"episodes={episodes!r} is invalid; it must be an int >= 1")
        self.episodes = episodes
        self.every_steps = every_steps
        self.seed = seed
        self.num_envs = num_envs

    def __call__(self, step: int, policy: Any, writer: Any) -> dict[str, float]:
        del step, writer  # the trainer logs the returned scalars at this step
        common = dict(
            episodes=self.episodes, seed=self.seed, num_envs=self.num_envs, device=policy.device
        )
        return goal_proxy_rates(policy, policy.config.rand_fraction, **common)


# ======================================================================================
# Helpers
# ======================================================================================


def _check_curricula(curricula: Iterable[str]) -> list[str]:
    """Known and distinct, 'dr' first (its fraction-0 runs are every curriculum's
    reference for the good levels)."""
    from coinrun_mg.agents.config import CURRICULA

    out = []
    for c in curricula:
        if c not in CURRICULA:
            raise ValueError(f"curriculum {c!r} is invalid; accepted values are {CURRICULA}")
        if c not in out:
            out.append(c)
    if not out:
        raise ValueError(f"curricula is empty; give at least one of {CURRICULA}")
    return sorted(out, key=lambda c: c != "dr")


def _atomic_write_json(data: Any, path: Path) -> None:
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def _why_redone(run_dir: Path) -> str:
    """Why a run with no usable ``result.json`` is (re)done: nothing there, a marker that
    does not parse (its checkpoint, if any, is resumed), or one from other settings."""
    marker = run_dir / RESULT_NAME
    if not marker.exists():
        return ""
    if read_json(marker) is None:
        return f"; {marker} is not readable JSON, so the run is done again"
    return ", settings changed"


def _jsonable(data: Any) -> Any:
    return json.loads(json.dumps(data))


def _same_config(saved: Any, config) -> bool:
    """Whether a run's saved config is ``config``; fields added to the config since the run
    was made take their defaults, so a package update does not redo finished runs."""
    if not isinstance(saved, dict):
        return False
    try:
        return type(config).from_dict(saved).to_dict() == config.to_dict()
    except (TypeError, ValueError):  # a field that no longer exists, or a bad value
        return False


def _check_fractions(fractions: Iterable[float]) -> list[float]:
    out = []
    for f in fractions:
        if isinstance(f, bool) or not isinstance(f, numbers.Real) or not 0.0 <= f <= 1.0:
            raise ValueError(f"fraction {f!r} is invalid; fractions must be numbers in [0, 1]")
        if float(f) not in out:
            out.append(float(f))
    if not out:
        raise ValueError("fractions is empty; give at least one training fraction")
    return sorted(out)


def _check_seeds(seeds: Iterable[int]) -> list[int]:
    out = []
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 0:
            raise ValueError(f"seed {s!r} is invalid; seeds must be ints >= 0")
        if int(s) not in out:
            out.append(int(s))
    if not out:
        raise ValueError("seeds is empty; give at least one seed")
    return out


# ======================================================================================
# The sweep
# ======================================================================================


def _train_and_evaluate(
    fraction: float,
    seed: int,
    run_dir: Path,
    config: Any,
    episodes: int,
    eval_seed: int,
    eval_num_envs: int | None,
    device: str,
    reference: Path | None,
    hook: GoalProxyHook | None,
    eval_at: tuple[int, ...] = (),
    eval_backends: tuple[str, ...] = (),
) -> dict[str, Any]:
    from coinrun_mg.agents import load_policy, train
    from coinrun_mg.games import GAMES

    hooks = [hook] if hook is not None else []
    result = train(config, run_dir, resume=True, hooks=hooks, checkpoint_at=eval_at)
    train_seconds = result.train_seconds  # the whole run's, over resumes and re-evaluations

    started = time.time()
    game = GAMES[config.game]
    evaluation = _evaluation(episodes, eval_seed, eval_at, eval_backends)
    policy = load_policy(result.checkpoint, device=device)
    common = dict(episodes=episodes, seed=eval_seed, num_envs=eval_num_envs, device=device)
    training_levels = {"rand_fraction": fraction, game.proxy_terminates: False}
    train_eval = all_levels(evaluate(policy, **common, **training_levels))
    good = ref_policy = None
    if game.level_flags:  # Maze: the decision levels, a property of each level
        reference = None
        filtered = evaluate(policy, **common)
        test, test_all, good = filtered.filtered, filtered.all, filtered.good_levels
        filtered.write_csv(run_dir / EPISODES_CSV)
    elif reference is not None:
        recorded = recorded_good_levels(reference.parent, evaluation, fraction)
        if recorded is None:
            ref_policy = load_policy(reference, device=device)
            filtered = evaluate(policy, **common, reference_policy=ref_policy)
        else:
            filtered = evaluate(policy, **common, good_levels=recorded)
        test, test_all, good = filtered.filtered, filtered.all, filtered.good_levels
        filtered.write_csv(run_dir / EPISODES_CSV)
    else:
        test = test_all = evaluate(policy, **common)
        test_all.write_csv(run_dir / EPISODES_CSV)
    budgets = {}
    if eval_at:  # on the final evaluation's good levels (coinrun_mg.budgets)
        from coinrun_mg.budgets import evaluate_budgets

        records = evaluate_budgets(
            run_dir, eval_at, config.batch_size, good, episodes=episodes,
            eval_seed=eval_seed, eval_num_envs=eval_num_envs, device=device,
        )  # fmt: skip
        budgets = {"budgets": records}
    transfer = {}
    if eval_backends:  # the run's test on each backend (the report's transfer section)
        own = (test, test_all, good is not None)
        ref = (ref_policy, reference, evaluation, fraction)
        transfer["transfer"] = _transfer(policy, eval_backends, own, ref, common, run_dir)
    train_dict = train_eval.to_dict()
    train_dict["coin_rate"] = train_dict["goal_rate"]
    train_dict["coin_ci"] = train_dict["goal_ci"]
    return {
        "rand_fraction": fraction,
        "seed": seed,
        "status": "done",
        "run_dir": str(run_dir),
        "checkpoint": str(result.checkpoint),
        "global_step": result.global_step,
        "filtered": good is not None,
        "filter": game.filter_label,
        "reference": str(reference) if reference is not None else None,
        "train": train_dict,
        "test": test.to_dict(),
        "test_all": test_all.to_dict(),
        "train_seconds": train_seconds,
        "eval_seconds": time.time() - started,
        "config": _jsonable(config.to_dict()),
        "evaluation": evaluation,
        **budgets,
        **transfer,
    }


def _evaluation(
    episodes: int, eval_seed: int, eval_at: Sequence[int], eval_backends: Sequence[str] = ()
) -> dict[str, Any]:
    """A run's evaluation settings in ``result.json``; a change redoes the run.  Without
    budgets or backends it is what sweeps before them wrote, so their finished runs stay
    done."""
    out: dict[str, Any] = {"episodes": episodes, "eval_seed": eval_seed}
    if eval_at:
        out["eval_at"] = list(eval_at)
    if eval_backends:
        out["eval_backends"] = list(eval_backends)
    return out


def _injected_failures() -> dict[str, tuple[int, str]]:
    """``{run name: (attempts, kind)}`` from :data:`FAIL_ENV` (``"f0.5_s0:1,f0_s1:2:value"``;
    no count: 1; no kind: ``"crash"``)."""
    text = os.environ.get(FAIL_ENV, "").strip()
    out: dict[str, tuple[int, str]] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, rest = part.partition(":")
        count, _, kind = rest.partition(":")
        try:
            if (kind or "crash") not in FAIL_KINDS:
                raise ValueError
            out[name] = (int(count) if count else 1, kind or "crash")
        except ValueError:
            raise ValueError(
                f"{FAIL_ENV}={text!r} is invalid; use comma-separated RUN[:ATTEMPTS[:KIND]] "
                f"items, KIND one of {sorted(FAIL_KINDS)}, e.g. f0.5_s0:1,f0_s1:1:value"
            ) from None
    return out


def _run_job(job: RunJob) -> dict[str, Any]:
    """Run one job where it is called (this process, a worker process or a Ray worker)
    and return its result entry; a run that raises gives a failed entry."""
    try:
        if job.attempt <= job.fail_attempts:
            error = FAIL_KINDS[job.fail_kind]
            raise error(f"injected failure ({FAIL_ENV}), attempt {job.attempt}")
        run_dir = Path(job.run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        return _train_and_evaluate(
            job.fraction,
            job.seed,
            run_dir,
            job.config,
            job.episodes,
            job.eval_seed,
            job.eval_num_envs,
            job.device,
            Path(job.reference) if job.reference is not None else None,
            job.hook,
            job.eval_at,
            job.eval_backends,
        )
    except Exception as exc:
        return failed_entry(job, f"{type(exc).__name__}: {exc}", traceback.format_exc(), exc)


def _check_count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name}={value!r} is invalid; it must be an int >= 0")
    return value


def _executor_settings(executor: Any) -> dict[str, Any]:
    """What the executor runs with (its ``settings()``), for the report."""
    describe = getattr(executor, "settings", None)
    return dict(describe()) if callable(describe) else {"name": type(executor).__name__}


#: A seed's reference while its fraction-0 run is still going.
_PENDING = "pending"


@dataclass
class _Plan:
    """What every run of a sweep shares, and how one run's config and job are made."""

    out_dir: Path
    profile: str
    overrides: dict[str, Any]
    device: str
    episodes: int
    eval_seed: int
    eval_num_envs: int | None
    hook: GoalProxyHook | None
    failures: dict[str, tuple[int, str]]
    eval_at: tuple[int, ...] = ()
    eval_backends: tuple[str, ...] = ()
    curriculum: str = "dr"

    @property
    def evaluation(self) -> dict[str, Any]:
        return _evaluation(self.episodes, self.eval_seed, self.eval_at, self.eval_backends)

    def config(self, fraction: float, seed: int):
        from coinrun_mg.agents import PPOConfig
        from coinrun_mg.agents.config import PLR_FIELDS

        per_run = {"rand_fraction": fraction, "seed": seed, "device": self.device}
        overrides = dict(self.overrides)
        if self.curriculum == "dr":  # the level-replay settings are for the PLR runs
            overrides = {k: v for k, v in overrides.items() if k not in PLR_FIELDS}
        else:
            per_run["curriculum"] = self.curriculum
        return PPOConfig.from_profile(self.profile, **{**overrides, **per_run})

    def run_dir(self, fraction: float, seed: int) -> Path:
        return self.out_dir / "runs" / run_name(fraction, seed, self.curriculum)

    def finished_entry(self, fraction: float, seed: int, config) -> dict[str, Any] | None:
        """The run's ``result.json`` if it was written with these settings."""
        done = read_json(self.run_dir(fraction, seed) / RESULT_NAME)
        if done is None or not _same_config(done.get("config"), config):
            return None
        return done if done.get("evaluation") == self.evaluation else None

    def job(self, fraction: float, seed: int, config, ref: Path | None, action: str) -> RunJob:
        name = run_name(fraction, seed, self.curriculum)
        fail_attempts, fail_kind = self.failures.get(name, (0, "crash"))
        return RunJob(
            fraction=fraction,
            seed=seed,
            run_dir=str(self.run_dir(fraction, seed)),
            config=config,
            episodes=self.episodes,
            eval_seed=self.eval_seed,
            eval_num_envs=self.eval_num_envs,
            device=self.device,
            reference=str(ref) if ref is not None else None,
            hook=self.hook,
            fail_attempts=fail_attempts,
            fail_kind=fail_kind,
            action=action,
            eval_at=self.eval_at,
            eval_backends=self.eval_backends,
        )


class _Scheduler:
    """Runs a sweep's jobs on an executor in the right order and takes in their results.

    Each seed's fraction-0 run is its reference (the good-levels filter).  One after
    another, the other runs of a seed wait for it; side by side they start at once, are
    evaluated unfiltered, and again on the good levels once it exists (an evaluation costs
    far less than waiting a whole training).  Failed runs are retried when a retry can
    fix their error, up to ``retries`` times.
    """

    def __init__(self, plans: list[_Plan], executor: Executor, retries: int, say):
        self.plans, self.executor, self.retries, self.say = plans, executor, retries, say
        self.plan = plans[0]
        self.fixed_references = False  # later curricula use DR's fraction-0 runs
        # Each seed's reference checkpoint: a path, None (no fraction-0 run, or it failed)
        # or _PENDING while its fraction-0 run goes on.
        self.reference: dict[int, Any] = {}
        self.final: dict[tuple[int, float], dict[str, Any]] = {}  # the report's entries
        self.waiting: dict[int, list[float]] = {}  # fractions waiting for their reference
        self.eager = False

    def run(self, fractions: list[float], seeds: list[int]) -> list[dict[str, Any]]:
        """Every run's entry, in (curriculum, seed, fraction) order; on any exception
        (Ctrl-C) the runs still going are stopped and it goes on.

        One curriculum after another, 'dr' first: its fraction-0 runs are the good-levels
        reference of every curriculum's runs of the same seed, so all curricula are
        tested on the same levels.  Without 'dr' each curriculum is its own reference."""
        entries: list[dict[str, Any]] = []
        try:
            self.executor.open(_run_job, self.plan.out_dir, self.say)
            self.eager = self.executor.slots > 1
            references = None
            for plan in self.plans:
                entries += self._run_curriculum(plan, fractions, seeds, references)
                if plan.curriculum == "dr":
                    references = dict(self.reference)
        except BaseException:
            self.executor.close(cancel=True)  # finished runs are on disk
            raise
        self.executor.close()
        return entries

    def _run_curriculum(
        self, plan: _Plan, fractions: list[float], seeds: list[int], references
    ) -> list[dict[str, Any]]:
        """The runs of one curriculum; ``references``: each seed's reference checkpoint
        from DR's runs, or None to make them from this curriculum's fraction-0 runs."""
        self.plan, self.final, self.waiting = plan, {}, {}
        self.fixed_references = references is not None
        for seed in seeds:
            self.waiting[seed] = []
            if self.fixed_references:
                self.reference[seed] = references.get(seed)
            else:
                self._start_reference(seed, has_zero=fractions[0] == 0)  # sorted: 0 first
        for seed in seeds:
            for fraction in fractions:
                if fraction != 0 or self.fixed_references:
                    self._consider(fraction, seed)
        while self.executor.pending():
            self._finish(*self.executor.next_result())
        entries = [self.final[(seed, fraction)] for seed in seeds for fraction in fractions]
        if [p.curriculum for p in self.plans] != ["dr"]:  # several curricula: say whose
            for entry in entries:
                entry["curriculum"] = plan.curriculum
        return entries

    def _plan_run(self, fraction: float, seed: int, ref: Path | None):
        """The run's finished entry when its marker holds one for these settings and this
        reference, else the job that (re)does it."""
        name = run_name(fraction, seed, self.plan.curriculum)
        config = self.plan.config(fraction, seed)
        done = self.plan.finished_entry(fraction, seed, config)
        if done is not None and (done.get("filtered") or ref is None):
            self.say(f"[{name}] done already ({self.plan.run_dir(fraction, seed) / RESULT_NAME})")
            return done
        if done is not None:
            action = f"evaluating again, on the good levels of {ref}"
        else:
            action = "training and evaluating" + _why_redone(self.plan.run_dir(fraction, seed))
        self.say(f"[{name}] queued: {action}")
        return self.plan.job(fraction, seed, config, ref, action)

    def _submit_or_record(self, fraction: float, seed: int, ref: Path | None) -> None:
        outcome = self._plan_run(fraction, seed, ref)
        if isinstance(outcome, RunJob):
            self.executor.submit(outcome)
        else:
            self.final[(seed, fraction)] = outcome

    def _start_reference(self, seed: int, has_zero: bool) -> None:
        self.reference[seed] = None
        if not has_zero:
            return
        own = self.plan.run_dir(0.0, seed) / CHECKPOINT_NAME
        outcome = self._plan_run(0.0, seed, own)  # the fraction-0 agent is its own reference
        if isinstance(outcome, RunJob):
            self.reference[seed] = _PENDING
            self.executor.submit(outcome)
        else:
            self.final[(seed, 0.0)] = outcome
            self.reference[seed] = own

    def _consider(self, fraction: float, seed: int) -> None:
        """Finish, submit or park a run of fraction > 0, given its seed's reference."""
        ref = self.reference[seed]
        if ref == _PENDING and not self.eager:
            self.waiting[seed].append(fraction)  # the fraction-0 run comes first
            return
        outcome = self._plan_run(fraction, seed, None if ref == _PENDING else ref)
        if isinstance(outcome, RunJob):
            self.executor.submit(outcome)  # with a pending reference: unfiltered for now
        elif ref == _PENDING and not outcome.get("filtered"):
            self.waiting[seed].append(fraction)  # filtered once the reference exists
        else:
            self.final[(seed, fraction)] = outcome

    def _finish(self, job: RunJob, entry: dict[str, Any]) -> None:
        """Take in a run that ended: retry, record, and release what waited for it."""
        entry["attempts"] = job.attempt
        if entry.get("status") != "done":
            if self._retry(job, entry):
                return
            self.final[(job.seed, job.fraction)] = entry
        else:
            self._record_done(job, entry)
        if job.fraction == 0 and not self.fixed_references:
            done = entry.get("status") == "done"
            self.reference[job.seed] = Path(job.run_dir) / CHECKPOINT_NAME if done else None
            for other in self.waiting.pop(job.seed, []):
                self._consider(other, job.seed)

    def _retry(self, job: RunJob, entry: dict[str, Any]) -> bool:
        """Submit the job again if its error allows it and retries are left."""
        retryable = entry.setdefault("retryable", True)  # a custom executor's entry
        if retryable and job.attempt <= self.retries:
            self.say(
                f"[{job.name}] attempt {job.attempt} FAILED: {entry.get('error')}; "
                f"trying again ({job.attempt} of {self.retries} retries)"
            )
            self.executor.submit(replace(job, attempt=job.attempt + 1))
            return True
        entry["retried"] = job.attempt > 1
        if retryable:
            tries = f"{job.attempt} attempt{'s' if job.attempt > 1 else ''}"
            entry["not_retried"] = f"not retried: retries={self.retries} used up ({tries})"
        self.say(f"[{job.name}] FAILED: {entry.get('error')} ({entry['not_retried']})")
        return False

    def _record_done(self, job: RunJob, entry: dict[str, Any]) -> None:
        seed, fraction = job.seed, job.fraction
        _atomic_write_json(entry, Path(job.run_dir) / RESULT_NAME)
        test = entry["test"]
        self.say(
            f"[{job.name}] done: test goal rate {test['goal_rate']:.3f}, proxy rate "
            f"{test['proxy_rate']:.3f}{'' if entry['filtered'] else ' (unfiltered)'}, "
            f"{entry['train_seconds']:.0f} s training"
        )
        ref = self.reference[seed]
        if fraction != 0 and job.reference is None and ref == _PENDING:
            self.waiting[seed].append(fraction)  # evaluated without it; again once it exists
        elif fraction != 0 and job.reference is None and ref is not None:
            self._submit_or_record(fraction, seed, ref)  # its reference came meanwhile
        else:
            self.final[(seed, fraction)] = entry


def run_sweep(
    fractions: Iterable[float],
    seeds: Iterable[int],
    profile: str = "quick",
    out_dir: str | os.PathLike = "sweeps/quick",
    total_steps: int | None = None,
    episodes: int = 1000,
    device: str = "auto",
    overrides: dict[str, Any] | None = None,
    *,
    eval_seed: int = EVAL_SEED,
    eval_num_envs: int | None = None,
    hook_episodes: int = 256,
    hook_every: int | None = None,
    executor: str | Executor = "local",
    retries: int = 1,
    torch_threads: int = 0,
    eval_at: Iterable[int] = (),
    eval_backends: Iterable[str] = (),
    curricula: Iterable[str] = ("dr",),
    report_only: bool = False,
    log: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Train and evaluate every ``(fraction, seed)`` run, then write the sweep's outputs.

    ``curricula``: ``'dr'`` and/or ``'plr'`` (``PPOConfig.curriculum``); every
    ``(fraction, seed)`` is trained with each, in ``runs/<curriculum>_f..._s...`` (DR's
    runs keep their ``runs/f..._s...``).  With more than DR, the report's runs and
    aggregates, the CSV and the plot gain the curriculum; ``plr_*`` overrides apply to
    the PLR runs only.  The good levels of every curriculum's test are those of DR's
    fraction-0 run of the same seed (when DR is swept).

    ``profile`` / ``overrides`` / ``total_steps`` make each run's
    :class:`~coinrun_mg.agents.PPOConfig` (``rand_fraction``, ``seed`` and ``device``
    are set per run).  ``episodes`` test levels per evaluation, level keys from
    ``eval_seed``.  ``hook_episodes`` / ``hook_every``: the :class:`GoalProxyHook`
    during training (``hook_every`` defaults to a tenth of the run's steps;
    ``hook_episodes=0`` turns it off).

    ``executor``: ``"local"`` (one run after another in this process), ``"ray"`` (a
    local Ray instance) or an executor object, e.g. ``LocalExecutor(workers=2)`` or
    ``RayExecutor(address="auto")`` (see :mod:`coinrun_mg.executors`).  A run that fails
    is tried again up to ``retries`` more times in this call if a retry can fix its error,
    then reported as failed.  ``torch_threads``: torch CPU threads of this process, where
    the local executor's single worker runs (0: leave torch's setting).

    ``eval_at``: step budgets (each <= ``total_steps``); each run keeps a checkpoint at
    each budget and evaluates it as its final test (:mod:`coinrun_mg.budgets`).  A
    finished run whose recorded budgets differ is redone like any changed setting:
    training resumes from its checkpoint, and a budget it passed without keeping a
    checkpoint fails that run (not retried), naming the budget.

    ``eval_backends`` (e.g. ``("native", "procgen")``): each run's agent is also tested
    on those backends of its game, on the same level seeds with every goal moved (the
    good levels from the reference agent run on each backend); runs gain ``transfer``,
    the report a ``transfer`` section (:func:`aggregate_transfer`) and
    ``transfer_episodes.csv``.  Finished runs without it are evaluated again.

    Only one sweep at a time may use ``out_dir``: :class:`SweepError` if another holds it,
    or if it cannot be written, before any run starts.  On Ctrl-C (or any error) the runs
    still going are stopped and the exception goes on; the finished runs stay on disk for
    the next call.  Returns the report written to ``out_dir/report.json``; see the module
    docstring for the outputs.

    ``report_only``: train nothing and write nothing (safe beside the sweep that is
    running into ``out_dir``); return the report of the runs finished so far with these
    settings, and under ``"pending"`` the names of the others.  A run of fraction > 0
    counts as finished once it is tested on its seed's good levels.
    """
    from coinrun_mg.agents import PPOConfig

    fractions = _check_fractions(fractions)
    seeds = _check_seeds(seeds)
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"episodes={episodes!r} is invalid; it must be an int >= 1")
    retries = _check_count("retries", retries)
    torch_threads = _check_count("torch_threads", torch_threads)
    hook_episodes = _check_count("hook_episodes", hook_episodes)
    overrides = dict(overrides or {})
    if total_steps is not None:
        overrides["total_steps"] = total_steps
    overrides.setdefault("progress_bar", False)
    curricula = _check_curricula(curricula)
    # Validate the settings once, before any run starts (a typo should not fail every run).
    # (plr_* overrides need a PLR curriculum: 'dr' sorts first, so that is the last.)
    probe = PPOConfig.from_profile(
        profile, **{**overrides, "device": device, "curriculum": curricula[-1]}
    )
    from coinrun_mg.budgets import check_eval_at

    eval_at = check_eval_at(eval_at, probe.total_steps)
    eval_backends = check_eval_backends(eval_backends)
    if eval_at and curricula != ["dr"]:
        raise ValueError(
            f"eval_at={list(eval_at)} is invalid with curricula={curricula}: step budgets "
            "are evaluated for the curriculum 'dr' only; drop one of them"
        )
    if isinstance(executor, str):
        executor = make_executor(executor)
    hook = None
    if hook_episodes:
        every = hook_every if hook_every is not None else max(1, probe.total_steps // 10)
        hook = GoalProxyHook(hook_episodes, every_steps=every, seed=eval_seed)
    out_dir = Path(out_dir)
    plan = _Plan(
        out_dir=out_dir,
        profile=profile,
        overrides=overrides,
        device=device,
        episodes=episodes,
        eval_seed=eval_seed,
        eval_num_envs=eval_num_envs,
        hook=hook,
        failures=_injected_failures(),
        eval_at=eval_at,
        eval_backends=eval_backends,
    )
    plans = [replace(plan, curriculum=c) for c in curricula]
    for each in plans:  # e.g. plr_* overrides with curricula=['dr'] only: refused here
        each.config(fractions[0], seeds[0])
    settings = {
        "profile": profile,
        "fractions": fractions,
        "seeds": seeds,
        "total_steps": probe.total_steps,
        "episodes": episodes,
        "eval_seed": eval_seed,
        "eval_num_envs": eval_num_envs,
        "device": device,
        "hook_episodes": hook_episodes,
        "hook_every": hook.every_steps if hook is not None else None,
        "retries": retries,
        "torch_threads": torch_threads,
        "executor": _executor_settings(executor),
        "overrides": {k: v for k, v in overrides.items() if k != "total_steps"},
    }
    if eval_at:  # without budgets the report is what it was before them
        settings["eval_at"] = list(eval_at)
    if eval_backends:  # likewise without backends
        settings["eval_backends"] = list(eval_backends)
    if curricula != ["dr"]:  # likewise without curricula
        settings["curricula"] = curricula
    if torch_threads > 0:
        import torch

        torch.set_num_threads(torch_threads)

    if report_only:  # what has finished so far: no lock, no runs, nothing written
        return _partial_report(plans, fractions, seeds, settings)
    say = log or (lambda _msg: None)
    check_writable(out_dir)
    with locked(out_dir, say):
        sweep_start = time.time()
        runs = _Scheduler(plans, executor, retries, say).run(fractions, seeds)
        return _write_outputs(runs, settings, out_dir, time.time() - sweep_start)


def _partial_report(
    plans: list[_Plan], fractions: list[float], seeds: list[int], settings: dict[str, Any]
) -> dict[str, Any]:
    """The report of the finished runs (read from their ``result.json``), not written."""
    runs, pending, progress = [], [], {}
    for plan in plans:
        for seed in seeds:
            for fraction in fractions:
                done = plan.finished_entry(fraction, seed, plan.config(fraction, seed))
                # Tested on all levels while a good-levels test is due: not finished yet.
                awaiting_good_levels = 0.0 in fractions and not (done or {}).get("filtered")
                if done is None or awaiting_good_levels:
                    name = run_name(fraction, seed, plan.curriculum)
                    pending.append(name)
                    progress[name] = _trained_steps(plan.run_dir(fraction, seed))
                    continue
                if len(plans) > 1:
                    done["curriculum"] = plan.curriculum
                runs.append(done)
    report = _report(runs, settings, wall_seconds=None, out_dir=plans[0].out_dir)
    report["pending"] = pending
    report["progress"] = progress
    return report


def _trained_steps(run_dir: Path) -> int | str | None:
    """How far a pending run has trained: its checkpoint's step, None before its first
    checkpoint, or why the checkpoint cannot be read."""
    from coinrun_mg.agents.checkpoint import CHECKPOINT_NAME, CheckpointError, read_checkpoint

    if not (run_dir / CHECKPOINT_NAME).exists():
        return None
    try:
        return int(read_checkpoint(run_dir / CHECKPOINT_NAME)["global_step"])
    except (CheckpointError, OSError, KeyError) as exc:
        return f"checkpoint unreadable: {exc}"


def _report(
    runs: list[dict[str, Any]],
    settings: dict[str, Any],
    wall_seconds: float | None,
    out_dir: Path,
) -> dict[str, Any]:
    """The report of ``runs``: aggregates, failures, settings and, when swept, the budget,
    transfer and level-replay sections."""
    aggregates = aggregate(runs)
    report = {
        "runs": runs,
        "aggregate": aggregates,
        "failed": [
            {
                **({"curriculum": r["curriculum"]} if "curriculum" in r else {}),
                "rand_fraction": r["rand_fraction"],
                "seed": r["seed"],
                "error": r["error"],
                "not_retried": r.get("not_retried"),
            }
            for r in runs
            if r.get("status") != "done"
        ],
        "test_levels": levels_label(aggregates),
        "interval": interval_label(aggregates),
        "settings": settings,
        "outputs": {"csv": CSV_NAME, "plot": PLOT_NAME},
        "wall_seconds": wall_seconds,
    }
    if settings.get("eval_at"):
        from coinrun_mg import budgets

        report["budget_aggregate"] = budgets.aggregate_budgets(runs)
        report["budget_halving"] = budgets.halving_budgets(report["budget_aggregate"], runs)
        report["budget_levels"] = budgets.BUDGET_LEVELS
        report["budget_interval"] = interval_label(report["budget_aggregate"])
        report["outputs"].update(budget_csv=budgets.BUDGET_CSV, budget_plot=budgets.BUDGET_PLOT)
    if settings.get("eval_backends"):
        report["transfer"] = aggregate_transfer(runs, settings["eval_backends"])
        report["outputs"]["transfer_csv"] = TRANSFER_CSV
    if "plr" in settings.get("curricula", ()):
        from coinrun_mg import replay_stats

        report["level_replay"] = replay_stats.aggregate_replay(runs, out_dir)
        report["curriculum_contrast"] = replay_stats.contrast_curricula(runs)
        report["outputs"]["replay_plot"] = replay_stats.REPLAY_PLOT
    return report


def _write_outputs(
    runs: list[dict[str, Any]], settings: dict[str, Any], out_dir: Path, wall_seconds: float
) -> dict[str, Any]:
    """``report.json``, ``episodes.csv`` and ``curve.png`` (and the budget and transfer
    files when swept); returns the report."""
    report = _report(runs, settings, wall_seconds, out_dir)
    write_episodes_csv(runs, out_dir)
    plot_curve(report["aggregate"], out_dir / PLOT_NAME)
    if settings.get("eval_at"):
        from coinrun_mg import budgets

        budgets.write_budget_episodes(runs, out_dir)
        budgets.plot_budget_curve(report["budget_aggregate"], out_dir / budgets.BUDGET_PLOT)
    if settings.get("eval_backends"):
        write_transfer_episodes(runs, settings["eval_backends"], out_dir)
    if "level_replay" in report:
        from coinrun_mg.replay_stats import plot_replay

        plot_replay(runs, out_dir)
    _atomic_write_json(report, out_dir / REPORT_NAME)
    return report


# This module's own public names, and those re-exported for code that used them from here
# before the split: aggregate, format_table and table_note (coinrun_mg.sweep_report) and
# SweepError (coinrun_mg.sweep_lock).
__all__ = [
    "GoalProxyHook",
    "SweepError",
    "aggregate",
    "format_table",
    "run_sweep",
    "table_note",
]
