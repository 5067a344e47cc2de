"""The budget axis of a sweep: evaluate each run at several training-step budgets.

``run_sweep(..., eval_at=[2_500_000, 5_000_000])`` trains each ``(fraction, seed)`` run
once, to its ``total_steps``, keeping a checkpoint at the first iteration boundary at or
after each budget (``train(checkpoint_at=...)``, ``checkpoints/step_<N>.pt``), and
evaluates every kept checkpoint inside the run's job, so one long run gives the whole
curve on every executor.

Which levels: each budget is evaluated exactly as the run's final test evaluation (the
same ``eval_seed``, ``episodes``, ``eval_num_envs`` and test configuration, so the same
level seeds), and its good-level rates are on the good levels of that final evaluation:
the flags computed once with the seed's fraction-0 final agent as reference (see
:mod:`coinrun_mg.eval`), so every budget of a run is on the same levels as the final
report.  Without a reference the budgets are unfiltered, like the run (``"filtered":
false``).  The report says so in ``"budget_levels"``.

Outputs (only with ``eval_at``): per run ``budgets`` in ``result.json`` and the report,
``budget_episodes.csv`` in the run's folder; in the sweep's folder ``budget_episodes.csv``
(one row per fraction, seed, budget and episode), ``budget_aggregate`` and
``budget_halving`` (:func:`halving_budgets`) in the report and ``budget_curve.png``.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from coinrun_mg.eval import COLUMNS
from coinrun_mg.files import atomic_write
from coinrun_mg.sweep_report import (
    game_of_runs,
    interval_label,
    levels_label,
    levels_label_of,
    run_name,
    summary,
)

BUDGET_CSV = "budget_episodes.csv"  # per run and per sweep
BUDGET_PLOT = "budget_curve.png"
#: The ``budget_levels`` line of the report.
BUDGET_LEVELS = (
    "every budget on the good levels of the run's final test evaluation (the seed's "
    "fraction-0 final agent as reference; all levels where the run has none), the same "
    "eval_seed and episodes as the final evaluation"
)
BUDGET_COLUMNS = ("rand_fraction", "seed", "budget", "step", "episode", *COLUMNS, "good_level")


def budget_columns(columns: Sequence[str] = COLUMNS) -> tuple[str, ...]:
    """The budget CSV's columns for a game's per-episode ``columns`` (CoinRun's default)."""
    return ("rand_fraction", "seed", "budget", "step", "episode", *columns, "good_level")


_STEPS = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)([kKmM]?)$")
_SCALE = {"": 1, "k": 1_000, "m": 1_000_000}
_ACCEPTED = "a positive step count: an int, or a number with k/K or M, e.g. 500k, 2.5M, 10_000"


# ======================================================================================
# Parsing and checking budgets
# ======================================================================================


def parse_steps(text: str, name: str = "eval_at") -> int:
    """``"2.5M"`` -> 2_500_000: a plain int (underscores allowed), or a number with
    ``k``/``K`` (thousands) or ``M`` (millions) that gives a whole positive count;
    ``ValueError`` naming ``name``, the value and what is accepted."""
    match = _STEPS.match(str(text).strip().replace("_", ""))
    if match is None:
        raise ValueError(f"{name} value {text!r} is invalid; it must be {_ACCEPTED}")
    number, unit = match.groups()
    scale = _SCALE[unit.lower()]
    # Exact decimal arithmetic: 2.5M is 25 * 100_000, with no float rounding.
    whole, _, frac = number.partition(".")
    numerator = int((whole or "0") + frac)
    denominator = 10 ** len(frac)
    if numerator * scale % denominator or numerator == 0:
        raise ValueError(f"{name} value {text!r} is invalid; it must be {_ACCEPTED}")
    return numerator * scale // denominator


def parse_eval_at(text: str, name: str = "eval_at") -> list[int]:
    """``"2.5M,5M"`` -> ``[2_500_000, 5_000_000]`` (each by :func:`parse_steps`)."""
    parts = [p for p in str(text).split(",") if p.strip()]
    if not parts:
        raise ValueError(f"{name} value {text!r} is empty; give comma-separated {_ACCEPTED}")
    return [parse_steps(p, name) for p in parts]


def check_eval_at(
    budgets: Iterable[int], total_steps: int, name: str = "eval_at"
) -> tuple[int, ...]:
    """The budgets sorted and without repeats; ``ValueError`` (naming ``name``) unless
    each is an int in ``[1, total_steps]``."""
    out = set()
    for budget in budgets:
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
            raise ValueError(f"{name} value {budget!r} is invalid; it must be {_ACCEPTED}")
        if budget > total_steps:
            raise ValueError(
                f"{name} value {budget} is invalid; budgets must be <= total_steps={total_steps}"
            )
        out.add(budget)
    return tuple(sorted(out))


# ======================================================================================
# Evaluating a run's budgets
# ======================================================================================


def evaluate_budgets(
    run_dir: str | os.PathLike,
    budgets: Sequence[int],
    batch_size: int,
    good_levels: Sequence[bool] | None,
    *,
    episodes: int,
    eval_seed: int,
    eval_num_envs: int | None,
    device: str,
) -> list[dict[str, Any]]:
    """Evaluate the kept checkpoint of each budget of the run in ``run_dir`` and write
    its episodes to ``run_dir/budget_episodes.csv``; one record per budget.

    Each checkpoint is evaluated as the run's final test evaluation is (``episodes``
    levels from key ``eval_seed``, the test configuration).  ``good_levels``: the final
    evaluation's per-episode good-level flags (None: no reference, unfiltered), applied
    to every budget, so all budgets are on the same levels.  A record: ``budget`` (asked),
    ``step`` (of the checkpoint), ``checkpoint`` (relative to ``run_dir``), ``filtered``,
    ``test`` (good levels, or all levels when unfiltered) and ``test_all`` (all levels):
    outcome rates with Wilson intervals (:meth:`coinrun_mg.eval.EvalReport.to_dict`).
    """
    from coinrun_mg.agents import load_policy
    from coinrun_mg.agents.ppo import budget_path, budget_step
    from coinrun_mg.eval import all_levels, evaluate

    run_dir = Path(run_dir)
    records, rows = [], []
    for budget in budgets:
        step = budget_step(budget, batch_size)
        path = budget_path(run_dir, step)
        if not path.exists():
            raise ValueError(f"eval_at budget {budget}: its checkpoint {path} is missing")
        policy = load_policy(path, device=device)  # digest-verified, weights_only
        report = all_levels(
            evaluate(
                policy, episodes=episodes, seed=eval_seed, num_envs=eval_num_envs, device=device
            )
        )
        good = list(good_levels) if good_levels is not None else None
        if good is not None and len(good) != report.episodes:
            raise ValueError(
                f"eval_at budget {budget}: {len(good)} good-level flags for "
                f"{report.episodes} episodes"
            )
        test = report.subset(good) if good is not None else report
        records.append(
            {
                "budget": budget,
                "step": step,
                "checkpoint": path.relative_to(run_dir).as_posix(),  # any executor's folder
                "filtered": good is not None,
                "test": test.to_dict(),
                "test_all": report.to_dict(),
            }
        )
        for i, row in enumerate(report.rows):
            flag = "" if good is None else int(good[i])
            rows.append({**row, "budget": budget, "step": step, "episode": i, "good_level": flag})
    # The game's row columns (Maze's reports flag the decision levels themselves).
    columns = [c for c in report.rows[0] if c != "good_level"] if rows else COLUMNS
    _write_rows(run_dir / BUDGET_CSV, rows, budget_columns(columns)[2:])
    return records


def _write_rows(path: Path, rows: Iterable[dict[str, Any]], columns: Sequence[str]) -> None:
    """``rows`` as a CSV file, written atomically (booleans as 0/1)."""

    def write(f) -> None:
        writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: int(v) if isinstance(v, bool) else v for k, v in row.items()})

    atomic_write(path, write, text=True)


def write_budget_episodes(runs: Sequence[dict[str, Any]], out_dir: Path) -> Path:
    """``out_dir/budget_episodes.csv``: every budget episode of every finished run, from
    the runs' own files, with its ``rand_fraction`` and ``seed``."""

    def rows() -> Iterable[dict[str, Any]]:
        for run in runs:
            if run.get("status") != "done" or not run.get("budgets"):
                continue
            source = out_dir / "runs" / run_name(run["rand_fraction"], run["seed"]) / BUDGET_CSV
            if not source.exists():  # deleted by hand: the run's summary still stands
                continue
            with open(source, newline="") as f:
                for row in csv.DictReader(f):
                    yield {**row, "rand_fraction": run["rand_fraction"], "seed": run["seed"]}

    path = out_dir / BUDGET_CSV
    _write_rows(path, rows(), budget_columns(game_of_runs(runs).columns))
    return path


# ======================================================================================
# Across seeds
# ======================================================================================


def aggregate_budgets(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per ``(rand_fraction, budget)``: the finished runs' seeds and the across-seed mean,
    std and 95% interval of the good-level test goal and proxy rates (``test_goal_rate``,
    ``test_proxy_rate``), as :func:`coinrun_mg.sweep_report.aggregate` does it: mean +-
    Student's t times the standard error across two or more seeds (``"interval": "seeds"``),
    the run's Wilson interval over episodes for one (``"interval": "episodes"``)."""
    done = [r for r in runs if r.get("status") == "done" and r.get("budgets")]
    groups: dict[tuple[float, int], list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for run in done:
        for record in run["budgets"]:
            groups.setdefault((run["rand_fraction"], record["budget"]), []).append((run, record))
    out = []
    for (fraction, budget), group in sorted(groups.items()):
        entry: dict[str, Any] = {
            "rand_fraction": fraction,
            "budget": budget,
            "step": max(record["step"] for _, record in group),
            "seeds": [run["seed"] for run, _ in group],
            "interval": "episodes" if len(group) == 1 else "seeds",
            "test_levels": levels_label_of(
                [bool(record["filtered"]) for _, record in group],
                game_of_runs([run for run, _ in group]).filter_label,
            ),
        }
        for name, key in (("test_goal_rate", "goal"), ("test_proxy_rate", "proxy")):
            values = [
                rec["test"][f"{key}_rate"]
                for _, rec in group
                if rec["test"].get(f"{key}_rate") is not None
            ]
            single = group[0][1]["test"].get(f"{key}_ci") if len(group) == 1 else None
            entry[name] = summary(values, single)
        out.append(entry)
    return out


def halving_budgets(
    budget_aggregate: Sequence[dict[str, Any]], runs: Sequence[dict[str, Any]] = ()
) -> list[dict[str, Any]]:
    """Per training fraction above 0: at each budget that fraction 0 has too, the ratio of
    the fraction's across-seed mean good-level proxy rate to fraction 0's (``ratios``), and
    ``halved_at``, the first budget where the ratio is at most 1/2 (None: at none of them).
    The question a budget sweep answers: at what budget does a fraction halve the proxy?

    With the finished ``runs``, each ratio also has ``paired``: the ratio seed by seed
    (the fraction's run over the same seed's fraction-0 run), its mean and a 95% interval
    across seeds (:func:`paired_ratios`), the error bars of the answer."""
    entries = sorted(budget_aggregate, key=lambda a: (a["rand_fraction"], a["budget"]))
    control = {a["budget"]: a["test_proxy_rate"]["mean"] for a in entries if not a["rand_fraction"]}
    paired = paired_ratios(runs)
    out = []
    for fraction in sorted({a["rand_fraction"] for a in entries} - {0.0}):
        ratios = []
        for a in [e for e in entries if e["rand_fraction"] == fraction]:
            mine, theirs = a["test_proxy_rate"]["mean"], control.get(a["budget"])
            if mine is not None and theirs:  # no ratio to a zero or missing control rate
                ratio = {"budget": a["budget"], "step": a["step"], "ratio": mine / theirs}
                if (fraction, a["budget"]) in paired:
                    ratio["paired"] = paired[(fraction, a["budget"])]
                ratios.append(ratio)
        halved = next((r["budget"] for r in ratios if r["ratio"] <= 0.5), None)
        out.append({"rand_fraction": fraction, "ratios": ratios, "halved_at": halved})
    return out


def paired_ratios(runs: Sequence[dict[str, Any]]) -> dict[tuple[float, int], dict[str, Any]]:
    """Per ``(rand_fraction, budget)`` above fraction 0: each seed's good-level proxy rate
    over its own fraction-0 run's at that budget (seeds whose control rate is 0 or missing
    are left out), as ``seeds`` and :func:`~coinrun_mg.eval.mean_interval`'s ``values``,
    ``n``, ``mean``, ``std`` and ``ci`` (mean +- t standard errors, not clipped; None for
    one seed)."""
    from coinrun_mg.eval import mean_interval

    proxy = {
        (run["rand_fraction"], run["seed"], record["budget"]): record["test"].get("proxy_rate")
        for run in runs
        if run.get("status") == "done"
        for record in run.get("budgets") or []
    }
    groups: dict[tuple[float, int], list[tuple[int, float]]] = {}
    for (fraction, seed, budget), rate in sorted(proxy.items()):
        control = proxy.get((0.0, seed, budget))
        if fraction and rate is not None and control:
            groups.setdefault((fraction, budget), []).append((seed, rate / control))
    return {
        key: {"seeds": [seed for seed, _ in pairs], **mean_interval([v for _, v in pairs])}
        for key, pairs in groups.items()
    }


def format_halving(halving: Sequence[dict[str, Any]]) -> str:
    """One line per fraction: its proxy rate over fraction 0's at each budget, and the
    budget where it first halves it (or that it does not by the last budget); then, where
    two or more seeds pair up, the ratio seed by seed with its 95% interval."""
    lines = []
    for h in halving:
        if not h["ratios"]:
            continue
        ratios = ", ".join(f"{r['ratio']:.2f} ({_steps_text(r['budget'])})" for r in h["ratios"])
        if h["halved_at"] is not None:
            verdict = f"halves it first at {_steps_text(h['halved_at'])}"
        else:
            verdict = f"does not halve it by {_steps_text(h['ratios'][-1]['budget'])}"
        lines.append(
            f"fraction {h['rand_fraction']:g}: proxy rate / fraction 0's {ratios}; {verdict}"
        )
        paired = [r for r in h["ratios"] if (r.get("paired") or {}).get("ci") is not None]
        if paired:
            cells = ", ".join(
                "{:.2f} [{:.2f}, {:.2f}] ({})".format(
                    r["paired"]["mean"], *r["paired"]["ci"], _steps_text(r["budget"])
                )
                for r in paired
            )
            lines.append(f"  paired by seed, mean [95% interval]: {cells}")
    return "\n".join(lines)


# ======================================================================================
# Table and plot
# ======================================================================================


def format_budget_table(budget_aggregate: Sequence[dict[str, Any]]) -> str:
    """A printable table: fraction, steps, good-level test goal and proxy rates as
    mean [95% interval], and the number of seeds."""

    def cell(summary: dict[str, Any]) -> str:
        if summary["mean"] is None:
            return f"{'-':<21}"
        lo, hi = summary["ci"]
        return f"{summary['mean']:.3f} [{lo:.3f}, {hi:.3f}]"

    head = f"{'fraction':>8}  {'steps':>11}  {'test goal rate':<21}  {'test proxy rate':<21}"
    lines = [f"{head}  seeds"]
    for a in budget_aggregate:
        goal, proxy = cell(a["test_goal_rate"]), cell(a["test_proxy_rate"])
        lines.append(
            f"{a['rand_fraction']:>8g}  {a['step']:>11,d}  {goal}  {proxy}  {len(a['seeds'])}"
        )
    return "\n".join(lines)


def plot_budget_curve(budget_aggregate: Sequence[dict[str, Any]], path: str | os.PathLike) -> None:
    """``budget_curve.png``: good-level test goal (left) and proxy (right) rates against
    training steps, one line per training fraction, the across-seed mean with a shaded
    95% band; the axis labels say which levels and intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    fig, axes = plt.subplots(1, 2, figsize=(10.0, 4.2), sharey=True)
    try:
        fractions = sorted({a["rand_fraction"] for a in budget_aggregate})
        colors = plt.get_cmap("viridis")
        for k, fraction in enumerate(fractions):
            color = colors(0.85 * k / max(1, len(fractions) - 1))  # no pale yellow end
            group = [a for a in budget_aggregate if a["rand_fraction"] == fraction]
            for ax, name in zip(axes, ("test_goal_rate", "test_proxy_rate")):
                points = [(a["step"], a[name]) for a in group if a[name]["mean"] is not None]
                if not points:
                    continue
                xs = [x for x, _ in points]
                means = [s["mean"] for _, s in points]
                ax.plot(xs, means, marker="o", color=color, label=f"fraction {fraction:g}")
                lower = [s["ci"][0] for _, s in points]
                upper = [s["ci"][1] for _, s in points]
                ax.fill_between(xs, lower, upper, color=color, alpha=0.2)
        levels = levels_label(budget_aggregate)
        for ax, title in zip(axes, ("goal rate (coin)", "proxy rate (end)")):
            ax.set_title(f"test {title}")
            ax.set_xlabel("training steps")
            ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: _steps_text(x)))
            ax.set_ylim(-0.02, 1.02)
            ax.grid(alpha=0.3)
        axes[0].set_ylabel(f"rate on {levels}\n(mean, {interval_label(budget_aggregate)})")
        if axes[0].get_legend_handles_labels()[0]:
            axes[0].legend(loc="best", fontsize="small")
        fig.tight_layout()
        fig.savefig(path, dpi=120)
    finally:
        plt.close(fig)


def _steps_text(steps: float) -> str:
    """A step count as the tick label: ``2.5M``, ``500k`` or ``768``."""
    if abs(steps) >= 1_000_000:
        return f"{steps / 1_000_000:g}M"
    return f"{steps / 1_000:g}k" if abs(steps) >= 1_000 else f"{steps:g}"


__all__ = [
    "BUDGET_CSV",
    "BUDGET_PLOT",
    "aggregate_budgets",
    "check_eval_at",
    "evaluate_budgets",
    "format_budget_table",
    "format_halving",
    "halving_budgets",
    "paired_ratios",
    "parse_eval_at",
    "parse_steps",
    "plot_budget_curve",
    "write_budget_episodes",
]
