"""What level replay did in a sweep's PLR runs, from each run's ``level_replay.csv``.

Under DR every episode trains the policy, so the share of trained episodes whose goal was
moved is the training fraction.  Under robust PLR only replayed levels train it, and the
buffer decides which come back; what matters for the misgeneralization is how often the
policy is trained on a moved goal.  Per PLR run (:func:`run_replay_summary`):

* ``new_moved_share``: the share of goal-moved levels among the new levels it played
  (the training distribution's, so about the training fraction);
* ``buffer_moved_share``: the buffer's share at the end of training;
* ``replayed_moved_share``: the share among the replayed (trained) episodes, over the
  whole run;
* ``trained_share``: the mean share of the rollout's transitions that trained, once
  replays began; ``first_replay_step``: when they began.

:func:`aggregate_replay` summarizes them per training fraction across seeds (the report's
``level_replay``), :func:`format_replay_table` prints them and :func:`plot_replay` draws
the buffer's and the trained episodes' moved shares against training steps
(``level_replay.png``).  :func:`contrast_curricula` compares each curriculum's agents with
DR's seed by seed (the report's ``curriculum_contrast``).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from coinrun_mg.sweep_report import curriculum_of, run_name, summary

REPLAY_PLOT = "level_replay.png"
#: The per-run figures, in table order, with their column titles.
REPLAY_METRICS = {
    "new_moved_share": "moved: new levels",
    "buffer_moved_share": "moved: buffer (end)",
    "replayed_moved_share": "moved: replayed (trained)",
    "trained_share": "trained transitions",
}


def read_history(run_dir: str | os.PathLike) -> list[dict[str, float | None]]:
    """The rows of a PLR run's ``level_replay.csv`` as numbers (None for empty cells);
    no rows when the run has none (a DR run)."""
    from coinrun_mg.agents.level_replay import HISTORY_CSV

    path = Path(run_dir) / HISTORY_CSV
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [
            {key: float(value) if value not in ("", None) else None for key, value in row.items()}
            for row in csv.DictReader(f)
        ]


def run_replay_summary(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """A PLR run's figures (module docstring) from its ``level_replay.csv``; None without
    one."""
    rows = read_history(run_dir)
    if not rows:
        return None
    new, new_moved = _episodes(rows, "episodes_new", "new_moved_share")
    replayed, replayed_moved = _episodes(rows, "episodes_replayed", "replayed_moved_share")
    first = next((r["global_step"] for r in rows if (r["episodes_replayed"] or 0) > 0), None)
    trained = [
        r["trained_share"]
        for r in rows
        if first is not None and r["global_step"] > first and r["trained_share"] is not None
    ]
    last = rows[-1]
    return {
        "steps": int(last["global_step"]),
        "first_replay_step": None if first is None else int(first),
        "new_episodes": round(new),
        "new_moved_share": new_moved / new if new else None,
        "replayed_episodes": round(replayed),
        "replayed_moved_share": replayed_moved / replayed if replayed else None,
        "buffer_moved_share": last["buffer_moved_share"],
        "trained_share": sum(trained) / len(trained) if trained else None,
    }


def _episodes(rows: Sequence[dict[str, Any]], count: str, share: str) -> tuple[float, float]:
    """Episodes of one kind over the run, and how many of them had the goal moved."""
    total = sum(r[count] or 0.0 for r in rows)
    moved = sum((r[count] or 0.0) * (r[share] or 0.0) for r in rows)
    return total, moved


def aggregate_replay(
    runs: Sequence[dict[str, Any]], out_dir: str | os.PathLike
) -> list[dict[str, Any]]:
    """Per training fraction of the finished PLR runs (``runs/plr_f*_s*`` under
    ``out_dir``): the seeds and, for each of :data:`REPLAY_METRICS`, the mean, std and 95%
    interval across seeds (Student's t; one seed: no interval)."""
    groups: dict[float, list[tuple[int, dict[str, Any]]]] = {}
    for run in runs:
        if run.get("status") != "done" or curriculum_of(run) != "plr":
            continue
        name = run_name(run["rand_fraction"], run["seed"], "plr")
        replay = run_replay_summary(Path(out_dir) / "runs" / name)
        if replay is not None:
            groups.setdefault(run["rand_fraction"], []).append((run["seed"], replay))
    out = []
    for fraction, group in sorted(groups.items()):
        entry: dict[str, Any] = {"rand_fraction": fraction, "seeds": [s for s, _ in group]}
        for key in REPLAY_METRICS:
            values = [replay[key] for _, replay in group if replay[key] is not None]
            entry[key] = summary(values, None)
        entry["runs"] = {str(seed): replay for seed, replay in group}
        out.append(entry)
    return out


#: The rates compared between curricula: (name, section of a run, key in that section).
CONTRAST_METRICS = (
    ("test_goal_rate", "test", "goal_rate"),
    ("test_proxy_rate", "test", "proxy_rate"),
    ("train_coin_rate", "train", "coin_rate"),
)


def contrast_curricula(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per curriculum other than DR and training fraction: the seed-paired differences
    (that curriculum's run minus DR's run of the same fraction and seed) of the test goal
    and proxy rates (on the seed's good or decision levels, as in the table) and the
    training coin rate, each as :func:`~coinrun_mg.eval.mean_interval` (mean and a 95%
    interval across seeds): does the curriculum move the rates beyond the seeds' spread?"""
    from coinrun_mg.eval import mean_interval

    done = {
        (curriculum_of(r), r["rand_fraction"], r["seed"]): r
        for r in runs
        if r.get("status") == "done"
    }
    out = []
    for curriculum in sorted({c for c, _, _ in done} - {"dr"}):
        for fraction in sorted({f for c, f, _ in done if c == curriculum}):
            seeds = sorted(
                s for c, f, s in done if (c, f) == (curriculum, fraction) and ("dr", f, s) in done
            )
            pairs = [(done[(curriculum, fraction, s)], done[("dr", fraction, s)]) for s in seeds]
            entry: dict[str, Any] = {
                "curriculum": curriculum,
                "rand_fraction": fraction,
                "seeds": seeds,
            }
            for name, section, key in CONTRAST_METRICS:
                entry[name] = mean_interval(
                    [
                        mine[section][key] - dr[section][key]
                        for mine, dr in pairs
                        if mine[section].get(key) is not None and dr[section].get(key) is not None
                    ]
                )
            out.append(entry)
    return out


def format_contrast(contrast: Sequence[dict[str, Any]]) -> str:
    """One line per curriculum and fraction: its goal, proxy and training coin rates minus
    DR's, paired by seed, as mean [95% interval]."""

    def cell(summary: dict[str, Any]) -> str:
        if summary["mean"] is None:
            return "-"
        if summary["ci"] is None:
            return f"{summary['mean']:+.3f}"
        return "{:+.3f} [{:+.3f}, {:+.3f}]".format(summary["mean"], *summary["ci"])

    lines = []
    for e in contrast:
        lines.append(
            f"{e['curriculum']} - dr, fraction {e['rand_fraction']:g}, paired by seed "
            f"({len(e['seeds'])}): goal {cell(e['test_goal_rate'])}, proxy "
            f"{cell(e['test_proxy_rate'])}, training coin rate {cell(e['train_coin_rate'])}"
        )
    if lines:
        lines.append("(mean [95% interval across seeds] of the differences; test rates as above)")
    return "\n".join(lines)


def format_replay_table(replay: Sequence[dict[str, Any]]) -> str:
    """The level-replay table: per fraction, each figure as mean [95% interval]."""
    titles = list(REPLAY_METRICS.values())
    lines = [f"{'fraction':>8}  " + "".join(f"{t:<27}" for t in titles) + "seeds"]
    for entry in replay:
        cells = []
        for key in REPLAY_METRICS:
            s = entry[key]
            if s["mean"] is None:
                cells.append(f"{'-':<27}")
            elif s["n"] > 1:
                cells.append(f"{s['mean']:.3f} [{s['ci'][0]:.3f}, {s['ci'][1]:.3f}]".ljust(27))
            else:
                cells.append(f"{s['mean']:.3f}".ljust(27))
        lines.append(f"{entry['rand_fraction']:>8g}  " + "".join(cells) + str(len(entry["seeds"])))
    lines.append(
        "(PLR runs; mean [95% interval across seeds]; moved: the share of goal-moved levels "
        "among the new levels played, in the buffer at the end, among the replayed episodes "
        "that trained the policy)"
    )
    return "\n".join(lines)


def plot_replay(runs: Sequence[dict[str, Any]], out_dir: str | os.PathLike) -> Path | None:
    """``level_replay.png`` in ``out_dir``: against training steps, the buffer's share of
    goal-moved levels (left) and the share among the replayed episodes so far (right),
    one line per training fraction (the mean over seeds, the range shaded; log scale),
    with the fraction itself dashed (DR's share).  None when no PLR run has a history."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from coinrun_mg.budgets import _steps_text

    curves: dict[float, list[tuple[list[float], list[float], list[float]]]] = {}
    for run in runs:
        if run.get("status") != "done" or curriculum_of(run) != "plr" or not run["rand_fraction"]:
            continue
        rows = read_history(
            Path(out_dir) / "runs" / run_name(run["rand_fraction"], run["seed"], "plr")
        )
        if rows:
            curves.setdefault(run["rand_fraction"], []).append(_curve(rows))
    if not curves:
        return None
    from matplotlib.ticker import FuncFormatter

    fig, axes = plt.subplots(1, 2, figsize=(10.0, 4.2), sharey=True)
    try:
        colors = plt.get_cmap("viridis")
        for k, (fraction, seeds) in enumerate(sorted(curves.items())):
            color = colors(0.85 * k / max(1, len(curves) - 1))
            steps = min((s[0] for s in seeds), key=len)  # the shortest run's steps
            for ax, column in zip(axes, (1, 2)):
                series = [s[column][: len(steps)] for s in seeds]
                mean = [_mean(v) for v in zip(*series)]
                ax.plot(steps, mean, color=color, label=f"fraction {fraction:g}")
                ax.fill_between(
                    steps,
                    [_low(v) for v in zip(*series)],
                    [_high(v) for v in zip(*series)],
                    color=color,
                    alpha=0.2,
                )
                ax.axhline(fraction, color=color, linestyle="--", linewidth=0.8)
        titles = ("buffer: share of goal-moved levels", "replayed (trained) episodes so far")
        for ax, title in zip(axes, titles):
            ax.set_title(title)
            ax.set_yscale("log")
            ax.set_xlabel("training steps")
            ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: _steps_text(x)))
            ax.grid(alpha=0.3, which="both")
        axes[0].set_ylabel("share with the goal moved\n(mean over seeds, range shaded)")
        axes[0].legend(loc="best", fontsize="small", title="dashed: DR's share")
        fig.tight_layout()
        path = Path(out_dir) / REPLAY_PLOT
        fig.savefig(path, dpi=120)
        return path
    finally:
        plt.close(fig)


def _curve(rows: Sequence[dict[str, Any]]) -> tuple[list[float], list[float], list[float]]:
    """Steps, the buffer's moved share, and the cumulative moved share of replayed
    episodes (NaN before the first replay)."""
    steps, buffer, trained = [], [], []
    replayed = moved = 0.0
    for r in rows:
        replayed += r["episodes_replayed"] or 0.0
        moved += (r["episodes_replayed"] or 0.0) * (r["replayed_moved_share"] or 0.0)
        steps.append(r["global_step"])
        buffer.append(r["buffer_moved_share"] if r["buffer_moved_share"] is not None else math.nan)
        trained.append(moved / replayed if replayed else math.nan)
    return steps, buffer, trained


def _finite(values: Sequence[float]) -> list[float]:
    return [v for v in values if not math.isnan(v)]


def _mean(values: Sequence[float]) -> float:
    kept = _finite(values)
    return sum(kept) / len(kept) if kept else math.nan


def _low(values: Sequence[float]) -> float:
    return min(_finite(values), default=math.nan)


def _high(values: Sequence[float]) -> float:
    return max(_finite(values), default=math.nan)


__all__ = [
    "CONTRAST_METRICS",
    "REPLAY_METRICS",
    "REPLAY_PLOT",
    "aggregate_replay",
    "contrast_curricula",
    "format_contrast",
    "format_replay_table",
    "plot_replay",
    "read_history",
    "run_replay_summary",
]
