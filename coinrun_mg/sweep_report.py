"""What a sweep's finished runs say: their names and records, the per-fraction aggregates
across seeds, the table, the misgeneralization curve and the episodes CSV.

A run lives in ``out_dir/runs/<run_name>/`` (:func:`run_name`); once finished it leaves
``result.json``, its entry, and ``test_episodes.csv``, its test episodes with their
``good_level`` (which :func:`recorded_good_levels` reads back for the other runs of a
fraction-0 run's seed).  :func:`aggregate` summarizes the finished runs per training fraction
(and curriculum): mean and standard deviation (``ddof=1``; 0 for one seed) across seeds of
each of :data:`METRICS`, and a 95% interval: mean +- t standard errors for two or more
seeds (t: Student's 95% quantile with seeds - 1 degrees of freedom, 4.30 for three seeds)
(``"interval": "seeds"``), the run's Wilson interval over its test episodes for one
(``"interval": "episodes"``).  Each aggregate says on which levels the test rates are
(``"test_levels"``): the good levels, or all levels when there is no fraction-0
reference; :func:`table_note` puts both into words under :func:`format_table`.

In the sweep's folder: ``episodes.csv`` (:func:`write_episodes_csv`: every test episode
of every run, with its ``rand_fraction``, ``seed`` and ``good_level``) and ``curve.png``
(:func:`plot_curve`: test goal and proxy rates and the training coin rate against the
training fraction).  Nothing here trains or evaluates; :mod:`coinrun_mg.sweep` runs the
sweep, and :mod:`coinrun_mg.budgets`, :mod:`coinrun_mg.transfer` and
:mod:`coinrun_mg.replay_stats` build their sections of the report on :func:`summary`.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from coinrun_mg.eval import mean_interval
from coinrun_mg.files import atomic_write

RESULT_NAME = "result.json"  # per-run file: the run's entry, once it finished
EPISODES_CSV = "test_episodes.csv"  # per-run file
CSV_NAME = "episodes.csv"
PLOT_NAME = "curve.png"

#: What the test rates are measured on (``"test_levels"`` of an aggregate and the report).
GOOD_LEVELS = "good levels"
ALL_LEVELS = "all levels (no fraction-0 reference)"
MIXED_LEVELS = "good levels where the seed's fraction-0 run finished, else all levels"

#: Scalars of the aggregate table: (name, section of a run, key in that section).
METRICS = (
    ("train_coin_rate", "train", "coin_rate"),
    ("test_goal_rate", "test", "goal_rate"),
    ("test_proxy_rate", "test", "proxy_rate"),
    ("test_died_rate", "test", "died_rate"),
    ("test_timeout_rate", "test", "timeout_rate"),
    ("test_all_goal_rate", "test_all", "goal_rate"),
    ("test_all_proxy_rate", "test_all", "proxy_rate"),
)


# ======================================================================================
# Runs: names and records
# ======================================================================================


def run_name(fraction: float, seed: int, curriculum: str = "dr") -> str:
    """The directory name of a run: ``f{fraction:g}_s{seed}``, prefixed by its curriculum
    when that is not 'dr' (``plr_f0.01_s0``)."""
    name = f"f{fraction:g}_s{seed}"
    return name if curriculum == "dr" else f"{curriculum}_{name}"


def curriculum_of(run: dict[str, Any]) -> str:
    """A run entry's curriculum ('dr' for entries written before curricula existed)."""
    return run.get("curriculum") or (run.get("config") or {}).get("curriculum", "dr")


def _curricula(runs: Sequence[dict[str, Any]]) -> list[str]:
    """The curricula of ``runs`` in order of appearance."""
    return list(dict.fromkeys(curriculum_of(r) for r in runs))


def read_json(path: Path) -> dict[str, Any] | None:
    """A run's ``result.json`` (or any JSON file); None if it is missing or does not parse."""
    try:
        with open(path) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def recorded_good_levels(
    reference_run: Path, evaluation: dict[str, Any], fraction: float, csv_name: str = EPISODES_CSV
) -> list[int] | None:
    """The good levels that a seed's finished fraction-0 run recorded in its episodes
    (``good_level`` column of ``csv_name``), for the other runs of that seed: the same
    levels its agent would give again, without its checkpoint (a sweep whose checkpoints
    were not kept resumes from its ``result.json`` and CSV files).  None where there is
    no such record: the run is the reference itself, the reference has not finished with
    these evaluation settings, or the file is missing or incomplete."""
    if fraction == 0:
        return None
    done = read_json(reference_run / RESULT_NAME)
    if done is None or not done.get("filtered") or done.get("evaluation") != evaluation:
        return None
    try:
        with open(reference_run / csv_name, newline="") as f:
            rows = list(csv.DictReader(f))
        levels = {int(row["level_seed"]): row["good_level"] in ("1", "True") for row in rows}
    except (OSError, KeyError, ValueError):
        return None
    if len(levels) != evaluation["episodes"]:
        return None
    return sorted(seed for seed, good in levels.items() if good)


# ======================================================================================
# Across seeds
# ======================================================================================


def summary(values: list[float], single_ci: list[float] | None) -> dict[str, Any]:
    """Mean, std (ddof=1; 0 for one value) and a 95% interval of per-seed rates:
    :func:`~coinrun_mg.eval.mean_interval`'s, clipped to [0, 1]; for one seed its run's
    ``single_ci`` (or the value itself)."""
    stats = mean_interval(values)
    mean, ci = stats["mean"], stats["ci"]
    if stats["n"] == 0:
        return {"mean": None, "std": None, "ci": None, "n": 0}
    if ci is not None:
        ci = [max(0.0, ci[0]), min(1.0, ci[1])]
    else:
        ci = list(single_ci) if single_ci is not None else [mean, mean]
    return {"mean": mean, "std": stats["std"], "ci": ci, "n": stats["n"]}


def aggregate(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per training fraction (per curriculum, then fraction, when the runs have another
    curriculum than 'dr': the entries then name it): the finished runs' seeds and a
    :func:`summary` of each of :data:`METRICS` across them."""
    curricula = _curricula(runs)
    out = []
    for curriculum in curricula:
        mine = [r for r in runs if curriculum_of(r) == curriculum]
        for fraction in sorted({r["rand_fraction"] for r in mine}):
            entry = _aggregate_entry([r for r in mine if r["rand_fraction"] == fraction], runs)
            if curricula != ["dr"]:  # a sweep over DR alone reports what it always did
                entry = {"curriculum": curriculum, **entry}
            out.append(entry)
    return out


def _aggregate_entry(
    runs: list[dict[str, Any]], every_run: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """The aggregate of the runs of one fraction (and curriculum)."""
    group = [r for r in runs if r.get("status") == "done"]
    game = game_of_runs(every_run)
    entry: dict[str, Any] = {
        "rand_fraction": runs[0]["rand_fraction"],
        "seeds": [r["seed"] for r in group],
        "failed_seeds": [r["seed"] for r in runs if r not in group],
        # The 95% intervals: across seeds, or the one run's Wilson interval.
        "interval": None if not group else "episodes" if len(group) == 1 else "seeds",
        "test_levels": levels_label_of([bool(r.get("filtered")) for r in group], game.filter_label),
        "game": game.name,
    }
    for name, section, key in METRICS:
        values = [r[section][key] for r in group if r[section].get(key) is not None]
        single = None
        if len(group) == 1:
            ci_key = key.replace("_rate", "_ci")
            single = group[0][section].get(ci_key)
        entry[name] = summary(values, single)
    return entry


def levels_label_of(filtered: Sequence[bool], label: str = GOOD_LEVELS) -> str | None:
    """The ``test_levels`` label of runs whose tests were (not) on the filtered levels
    (``label``: CoinRun's good levels, Maze's decision levels)."""
    if not filtered:
        return None
    if all(filtered):
        return label
    return ALL_LEVELS if not any(filtered) else MIXED_LEVELS


def game_of_runs(runs: Sequence[dict[str, Any]]):
    """The game (:class:`coinrun_mg.games.Game`) the runs trained on (CoinRun for runs
    saved before the game was recorded)."""
    from coinrun_mg.games import GAMES

    names = {(r.get("config") or {}).get("game", "coinrun") for r in runs}
    return GAMES[names.pop()] if len(names) == 1 else GAMES["coinrun"]


# ======================================================================================
# In words and pictures
# ======================================================================================


def levels_label(aggregates: Sequence[dict[str, Any]]) -> str:
    """On which levels the test rates of ``aggregates`` are (:data:`GOOD_LEVELS`,
    :data:`ALL_LEVELS` or :data:`MIXED_LEVELS`)."""
    labels = {a.get("test_levels") for a in aggregates} - {None}
    if len(labels) == 1:
        return labels.pop()
    return MIXED_LEVELS if labels else GOOD_LEVELS


def interval_label(aggregates: Sequence[dict[str, Any]]) -> str:
    """What the 95% intervals of ``aggregates`` are over, in words."""
    kinds = {a.get("interval") for a in aggregates} - {None}
    if kinds == {"episodes"}:
        return "95% Wilson interval over episodes (one seed)"
    if kinds == {"seeds"} or not kinds:
        return "95% interval across seeds"
    return "95% interval across seeds, or over episodes where a fraction has one seed"


def table_note(aggregates: Sequence[dict[str, Any]]) -> str:
    """The line under :func:`format_table`: what the intervals are and which levels."""
    levels = levels_label(aggregates)
    seeds = any(len(a["seeds"]) > 1 for a in aggregates)
    rows = "; seed rows: that run's Wilson interval over episodes" if seeds else ""
    goal = _goal_noun(aggregates)
    return f"(mean [{interval_label(aggregates)}]{rows}; test: {levels}, every {goal} moved)"


def _goal_noun(aggregates: Sequence[dict[str, Any]]) -> str:
    return "cheese" if any(a.get("game") == "maze" for a in aggregates) else "coin"


def format_table(aggregates: Sequence[dict[str, Any]], runs: Sequence[dict[str, Any]] = ()) -> str:
    """A printable table: fraction, training coin (cheese) rate, test goal and proxy rates, each
    as mean [95% interval], and the number of seeds; :func:`table_note` says which
    levels and intervals.  Given the ``runs``, a fraction with several finished seeds
    also gets one row per seed (that run's rates, Wilson intervals over its episodes)
    under its across-seed mean."""

    def cell(summary: dict[str, Any] | None) -> str:
        if summary is None or summary["mean"] is None:
            return f"{'-':<21}"
        lo, hi = summary["ci"]
        return f"{summary['mean']:.3f} [{lo:.3f}, {hi:.3f}]"

    per_seed = any(len(a["seeds"]) > 1 for a in aggregates) and bool(runs)
    # A curriculum column only when the sweep has one (several, or not 'dr').
    by_curriculum = any("curriculum" in a for a in aggregates)
    label = f"{'':>6}  " if per_seed else ""
    head = (
        f"{'fraction':>8}  {label}{f'train {_goal_noun(aggregates)} rate':<21}  "
        f"{'test goal rate':<21}  "
        f"{'test proxy rate':<21}  seeds"
    )
    lines = [f"{'curriculum':<10}  {head}" if by_curriculum else head]
    for a in aggregates:
        curriculum = a.get("curriculum", "dr")
        first = f"{curriculum:<10}  " if by_curriculum else ""
        seeds = str(len(a["seeds"]))
        if a["failed_seeds"]:
            seeds += f" ({len(a['failed_seeds'])} failed)"
        label = f"{'mean':>6}  " if per_seed else ""
        names = ("train_coin_rate", "test_goal_rate", "test_proxy_rate")
        cells = "  ".join(cell(a[name]) for name in names)
        lines.append(f"{first}{a['rand_fraction']:>8g}  {label}{cells}  {seeds}")
        if per_seed and len(a["seeds"]) > 1:
            for run in runs:
                if (
                    run.get("status") == "done"
                    and run["rand_fraction"] == a["rand_fraction"]
                    and curriculum_of(run) == curriculum
                ):
                    cells = "  ".join(cell(_run_summary(run, name)) for name in names)
                    pad = " " * len(first)
                    lines.append(f"{pad}{'':>8}  {'s' + str(run['seed']):>6}  {cells}")
    return "\n".join(lines)


def _run_summary(run: dict[str, Any], metric: str) -> dict[str, Any] | None:
    """One run's value of a :data:`METRICS` entry, with its Wilson interval."""
    section, key = next((sec, k) for name, sec, k in METRICS if name == metric)
    value = run[section].get(key)
    if value is None:
        return None
    return {"mean": value, "ci": run[section].get(key.replace("_rate", "_ci"))}


def plot_curve(aggregates: Sequence[dict[str, Any]], path: str | os.PathLike) -> None:
    """The misgeneralization curve as a PNG: test goal and proxy rates (on the levels
    :func:`levels_label` names) and the training coin rate against the training fraction,
    with 95% intervals; the labels say which levels and intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = levels_label(aggregates)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    try:
        series = (
            ("test_goal_rate", f"test goal rate (coin), {levels}", "tab:green", "-"),
            ("test_proxy_rate", f"test proxy rate (end), {levels}", "tab:red", "-"),
            ("train_coin_rate", "training coin rate", "tab:gray", "--"),
        )
        # One line per curriculum and rate: colour for the rate, marker and dashes for
        # the curriculum (DR alone: the plot as it always was).
        curricula = list(dict.fromkeys(a.get("curriculum", "dr") for a in aggregates))
        looks = {"dr": ("o", None), "plr": ("s", (0, (1, 1)))}
        for curriculum in curricula:
            marker, dashes = looks.get(curriculum, ("^", (0, (3, 1, 1, 1))))
            mine = [a for a in aggregates if a.get("curriculum", "dr") == curriculum]
            for name, label, color, style in series:
                points = [(a["rand_fraction"], a[name]) for a in mine]
                points = [(x, v) for x, v in points if v["mean"] is not None]
                if not points:
                    continue
                xs = [x for x, _ in points]
                ys = [s["mean"] for _, s in points]
                lower = [max(0.0, s["mean"] - s["ci"][0]) for _, s in points]
                upper = [max(0.0, s["ci"][1] - s["mean"]) for _, s in points]
                ax.errorbar(
                    xs,
                    ys,
                    yerr=[lower, upper],
                    label=label if len(curricula) == 1 else f"{curriculum}: {label}",
                    color=color,
                    linestyle=style if dashes is None else dashes,
                    marker=marker,
                    capsize=3,
                )
        positive = sorted({a["rand_fraction"] for a in aggregates if a["rand_fraction"] > 0})
        if positive:
            ax.set_xscale("symlog", linthresh=positive[0])
        ax.set_xlabel("training fraction of levels with a moved coin (rand_fraction)")
        ax.set_ylabel(f"rate ({interval_label(aggregates)})")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title("Goal misgeneralization in CoinRun")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # nothing to show when every run failed
            ax.legend(loc="best", fontsize="small")
        fig.tight_layout()
        fig.savefig(path, dpi=120)
    finally:
        plt.close(fig)


def write_episodes_csv(runs: Sequence[dict[str, Any]], out_dir: Path) -> Path:
    """Every test episode of every finished run, from the runs' own CSV files."""
    path = out_dir / CSV_NAME
    columns = ["rand_fraction", "seed", *game_of_runs(runs).columns, "good_level"]
    if _curricula(runs) != ["dr"]:  # DR alone: the columns it always had
        columns.insert(0, "curriculum")

    def write_rows(f) -> None:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for run in runs:
            if run.get("status") != "done":
                continue
            curriculum = curriculum_of(run)
            name = run_name(run["rand_fraction"], run["seed"], curriculum)
            source = out_dir / "runs" / name / EPISODES_CSV
            if not source.exists():  # deleted by hand: the run's summary still stands
                continue
            with open(source, newline="") as g:
                for row in csv.DictReader(g):
                    row.setdefault("good_level", "")
                    row.update(rand_fraction=run["rand_fraction"], seed=run["seed"])
                    writer.writerow({**row, "curriculum": curriculum})

    atomic_write(path, write_rows, text=True)
    return path
