"""The transfer section of a sweep (``eval_backends``): the same agents tested on several
backends of their game.

With ``eval_backends`` (e.g. native and procgen), each run's agent is also tested on those
backends (:func:`_transfer`, inside the run's job): the same level seeds with every goal
moved, on the good levels the seed's fraction-0 run recorded on that backend (else with
the reference agent run there too); its episodes go to ``test_episodes_<backend>.csv``.
Runs gain ``transfer``, the report a ``transfer`` section (:func:`aggregate_transfer`,
printed by :func:`format_transfer_table`) and the sweep's folder
``transfer_episodes.csv`` (:func:`write_transfer_episodes`).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from coinrun_mg.eval import evaluate
from coinrun_mg.files import atomic_write
from coinrun_mg.sweep_report import (
    EPISODES_CSV,
    GOOD_LEVELS,
    MIXED_LEVELS,
    game_of_runs,
    interval_label,
    levels_label_of,
    recorded_good_levels,
    run_name,
    summary,
)

TRANSFER_CSV = "transfer_episodes.csv"
#: The outcome rates of the transfer section, per backend.
TRANSFER_RATES = ("goal_rate", "proxy_rate", "died_rate", "timeout_rate")


def check_eval_backends(backends: Iterable[str]) -> tuple[str, ...]:
    """``backends`` as a tuple without repeats, each one of :data:`~coinrun_mg.games.BACKENDS`;
    procgen must be importable when asked for (ImportError saying how to install it)."""
    from coinrun_mg.games import BACKENDS

    if isinstance(backends, str):
        backends = [b for b in backends.split(",") if b.strip()]
    out: list[str] = []
    for backend in backends:
        if backend not in BACKENDS:
            raise ValueError(
                f"eval_backends entry {backend!r} is invalid; accepted values are {BACKENDS}"
            )
        if backend not in out:
            out.append(backend)
    if "procgen" in out:
        from coinrun_mg.envs.coinrun.procgen_env import _import_procgen

        _import_procgen()
    return tuple(out)


def transfer_csv_name(backend: str) -> str:
    """A run's episodes on a backend it was not trained on."""
    return f"test_episodes_{backend}.csv"


# ======================================================================================
# One run, inside its job
# ======================================================================================


def _transfer(policy, backends, own, ref, common, run_dir: Path) -> dict[str, Any]:
    """The run's test on each of ``backends`` (same level seeds, goal moved on every
    level): its own backend's is ``own`` (test, test_all, filtered); another backend's is
    evaluated there on the good levels the reference run recorded there, else with the
    reference agent run on that backend too; its episodes go to
    ``test_episodes_<backend>.csv``.  ``ref``: (reference policy or None, reference
    checkpoint or None, the run's evaluation settings, the run's fraction)."""
    from coinrun_mg.agents import load_policy
    from coinrun_mg.eval import FilteredEvalReport
    from coinrun_mg.games import NATIVE_ALIAS, backend_env_id, game_of_env

    trained = policy.env_id
    game = game_of_env(trained)
    own_id = game.native_id if trained in (NATIVE_ALIAS, game.native_id) else trained
    out: dict[str, Any] = {}
    for backend in backends:
        env_id = backend_env_id(backend, trained)
        if env_id == own_id:
            test, test_all, filtered = own
        else:
            report = _backend_test(policy, env_id, backend, ref, common, load_policy)
            if isinstance(report, FilteredEvalReport):
                test, test_all, filtered = report.filtered, report.all, True
            else:
                test, test_all, filtered = report, report, False
            report.write_csv(run_dir / transfer_csv_name(backend))
        out[backend] = {
            "env_id": env_id,
            "filtered": filtered,
            "test": test.to_dict(),
            "test_all": test_all.to_dict(),
        }
    return out


def _backend_test(policy, env_id: str, backend: str, ref, common, load_policy):
    """The run's test on another backend, filtered as :func:`_transfer` says."""
    ref_policy, reference, evaluation, fraction = ref
    if reference is None:
        return evaluate(policy, env_id=env_id, **common)
    csv_name = transfer_csv_name(backend)
    recorded = recorded_good_levels(reference.parent, evaluation, fraction, csv_name)
    if recorded is not None:
        return evaluate(policy, env_id=env_id, **common, good_levels=recorded)
    if ref_policy is None:
        ref_policy = load_policy(reference, device=common["device"])
    return evaluate(policy, env_id=env_id, **common, reference_policy=ref_policy)


# ======================================================================================
# Across seeds: the report's section, its table and CSV
# ======================================================================================


def aggregate_transfer(runs: Sequence[dict[str, Any]], backends: Sequence[str]) -> dict[str, Any]:
    """The report's ``transfer`` section: per training fraction and backend, a
    :func:`summary` of each test rate (:data:`TRANSFER_RATES`) across the finished
    runs' seeds (one seed: its Wilson interval over episodes), on the filtered levels
    where the run has them."""
    done = [r for r in runs if r.get("status") == "done" and r.get("transfer")]
    rows = []
    for fraction in sorted({r["rand_fraction"] for r in runs}):
        group = [r for r in done if r["rand_fraction"] == fraction]
        entry: dict[str, Any] = {
            "rand_fraction": fraction,
            "seeds": [r["seed"] for r in group],
            "interval": None if not group else "episodes" if len(group) == 1 else "seeds",
        }
        for backend in backends:
            sides = [r["transfer"][backend] for r in group if backend in r["transfer"]]
            side: dict[str, Any] = {
                "env_id": sides[0]["env_id"] if sides else None,
                "test_levels": levels_label_of(
                    [s["filtered"] for s in sides], game_of_runs(runs).filter_label
                ),
            }
            for key in TRANSFER_RATES:
                values = [s["test"][key] for s in sides if s["test"].get(key) is not None]
                single = (
                    sides[0]["test"].get(key.replace("_rate", "_ci")) if len(sides) == 1 else None
                )
                side[key] = summary(values, single)
            entry[backend] = side
        rows.append(entry)
    return {"backends": list(backends), "game": game_of_runs(runs).name, "aggregate": rows}


def format_transfer_table(transfer: dict[str, Any]) -> str:
    """The transfer section as a table: per fraction, one row per backend, the goal,
    proxy, died and timeout rates as mean [95% interval]; a note says which levels."""

    def cell(summary: dict[str, Any]) -> str:
        if summary["mean"] is None:
            return f"{'-':<21}"
        lo, hi = summary["ci"]
        return f"{summary['mean']:.3f} [{lo:.3f}, {hi:.3f}]"

    backends = transfer["backends"]
    width = max(len("backend"), *(len(b) for b in backends))
    names = "  ".join(f"{'test ' + k.replace('_', ' '):<21}" for k in TRANSFER_RATES)
    lines = [f"{'fraction':>8}  {'backend':<{width}}  {names}  seeds"]
    levels = set()
    for a in transfer["aggregate"]:
        for i, backend in enumerate(backends):
            side = a[backend]
            levels.add(side["test_levels"])
            cells = "  ".join(cell(side[k]) for k in TRANSFER_RATES)
            fraction = f"{a['rand_fraction']:>8g}" if i == 0 else " " * 8
            lines.append(f"{fraction}  {backend:<{width}}  {cells}  {len(a['seeds'])}")
    levels.discard(None)
    where = levels.pop() if len(levels) == 1 else MIXED_LEVELS if levels else GOOD_LEVELS
    intervals = interval_label(transfer["aggregate"])
    goal = "cheese" if transfer.get("game") == "maze" else "coin"
    lines.append(
        f"(mean [{intervals}]; test: {where} of each backend, the same level seeds, every "
        f"{goal} moved)"
    )
    return "\n".join(lines)


def write_transfer_episodes(runs, backends: Sequence[str], out_dir: Path) -> Path:
    """Every transfer test episode of every finished run, with its ``backend``."""
    path = out_dir / TRANSFER_CSV
    columns = ["backend", "rand_fraction", "seed", *game_of_runs(runs).columns, "good_level"]

    def write_rows(f) -> None:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for run in runs:
            sides = run.get("transfer") if run.get("status") == "done" else None
            for backend in backends if sides else ():
                run_dir = out_dir / "runs" / run_name(run["rand_fraction"], run["seed"])
                source = run_dir / transfer_csv_name(backend)
                if not source.exists():
                    source = run_dir / EPISODES_CSV  # the backend it was trained on
                if backend not in sides or not source.exists():
                    continue
                with open(source, newline="") as g:
                    for row in csv.DictReader(g):
                        row.setdefault("good_level", "")
                        extra = {"backend": backend, "rand_fraction": run["rand_fraction"]}
                        writer.writerow({**row, **extra, "seed": run["seed"]})

    atomic_write(path, write_rows, text=True)
    return path
