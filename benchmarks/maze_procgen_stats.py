#!/usr/bin/env python
"""Maze fidelity: level statistics and scripted policies, native Maze-v0 next to procgen.

For each backend (``--env-id``, default both ``coinrun_mg/Maze-v0`` and
``coinrun_mg/ProcgenMaze-v0``), each mode (easy, hard) and each cheese placement, the
first ``--levels`` episodes to start in a ``--envs``-env vector env are played by a
scripted policy that knows the maze (breadth-first search over the level's open cells):

* placements: **stock** (``rand_fraction=1``: the cheese anywhere but the start, as stock
  procgen puts it) and **corner** (``rand_fraction=0``, ``--corner-size`` k: the cheese in
  the maze's top-right k x k region; k = 1 is procgenAISC's ``maze_aisc``);
* walkers: the *cheese walker* (shortest path to the cheese) and the *corner walker*
  (shortest path to the top-right cell, ``corner_terminates=True``).

The cheese walker's levels give the maze_dim distribution, the shortest-path lengths
start->cheese and start->corner (the top-right cell) and the share of *decision levels*
(the cheese off the start->corner path, so the two paths part somewhere).  Success is the
event within the 500-step timeout: the cheese (``cheese_collected``) or the corner region
(``reached_corner``).  Episodes are counted from the moment they start and all of them are
waited for, so short episodes are not over-represented; each run is its own sample of
levels (native and procgen draw different level seeds, so they are compared as two samples
of the same distribution).

Where both backends ran, every statistic is tested for a difference: maze_dim counts by a
chi-square test of homogeneity, path lengths by a two-sample Kolmogorov-Smirnov test (and
the means by a z-test), shares and success rates by a two-proportion z-test.  A difference
is flagged when its p-value is below ``--alpha`` divided by the number of tests
(Bonferroni).  Prints markdown tables and writes JSON (with machine details) to ``--out``.

    python benchmarks/maze_procgen_stats.py                 # 1000 levels per mode and run
    python benchmarks/maze_procgen_stats.py --levels 200
    python benchmarks/maze_procgen_stats.py --env-id coinrun_mg/ProcgenMaze-v0
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections import Counter, deque
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
try:
    import coinrun_mg  # noqa: F401  (registers the environments)
except ImportError:  # a plain checkout
    sys.path.insert(0, str(REPO_ROOT))
    import coinrun_mg  # noqa: F401

NATIVE_ID = "coinrun_mg/Maze-v0"
PROCGEN_ID = "coinrun_mg/ProcgenMaze-v0"
NOOP = 4
MODES = ("easy", "hard")
PLACEMENTS = ("stock", "corner")
WALKERS = ("cheese", "corner")
TIMEOUT = 500
# procgen's action ids for the four moves (x right, y up).
MOVES = ((-1, 0, 0), (1, 0, 6), (0, -1, 3), (0, 1, 5))


# env id -> (vector env, index) -> the current level of env i: (maze_dim, the cheese's
# maze cell, the maze's open cells as bool [x, y]), maze coordinates, y up, start (0, 0).
def _procgen_level(venv, i: int):
    core = venv.unwrapped.core
    cheese = (int(core.cheese_x[i]), int(core.cheese_y[i]))
    return int(core.maze_dim[i]), cheese, core.open_cells(i)


def _native_level(venv, i: int):
    s = venv.unwrapped.core.state
    m, n = int(s.margin[i]), int(s.maze_dim[i])
    cheese = (int(s.cheese_x[i]) - m, int(s.cheese_y[i]) - m)
    return n, cheese, (~s.wall[i, m : m + n, m : m + n]).cpu().numpy()


LEVEL_ACCESS = {NATIVE_ID: _native_level, PROCGEN_ID: _procgen_level}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--levels", type=int, default=1000, help="levels per mode and run (1000)")
    p.add_argument("--envs", type=int, default=50, help="vector envs (50)")
    p.add_argument("--corner-size", type=int, default=1, help="corner placement's region (1)")
    p.add_argument(
        "--env-id",
        action="append",
        default=None,
        help=f"env ids to compare (default: {NATIVE_ID} and {PROCGEN_ID})",
    )
    p.add_argument("--modes", default=",".join(MODES), help="comma-separated (easy,hard)")
    p.add_argument(
        "--alpha", type=float, default=0.05, help="family-wise level of the tests (0.05)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--out", type=Path, default=REPO_ROOT / "benchmarks" / "out" / "maze_procgen_stats.json"
    )
    args = p.parse_args(argv)
    args.env_id = args.env_id or [NATIVE_ID, PROCGEN_ID]
    args.modes = [m for m in args.modes.split(",") if m]
    if min(args.levels, args.envs, args.corner_size) < 1:
        p.error("--levels, --envs and --corner-size must be >= 1")
    if not args.modes or any(m not in MODES for m in args.modes):
        p.error(f"--modes must be a comma-separated subset of {MODES}")
    unknown = [e for e in args.env_id if e not in LEVEL_ACCESS]
    if unknown:
        p.error(f"no level accessor for {unknown}; add one to LEVEL_ACCESS")
    return args


# --------------------------------------------------------------------------------------
# Shortest paths
# --------------------------------------------------------------------------------------


def bfs_path(open_cells: np.ndarray, start, goal) -> tuple[list[int], list[tuple[int, int]]]:
    """The actions and the cells (start excluded) of a shortest path in ``[x, y]`` cells."""
    n_x, n_y = open_cells.shape
    start, goal = tuple(start), tuple(goal)
    prev = {start: None}
    queue = deque([start])
    while queue:
        cell = queue.popleft()
        if cell == goal:
            break
        for dx, dy, a in MOVES:
            nxt = (cell[0] + dx, cell[1] + dy)
            if 0 <= nxt[0] < n_x and 0 <= nxt[1] < n_y and open_cells[nxt] and nxt not in prev:
                prev[nxt] = (cell, a)
                queue.append(nxt)
    if goal not in prev:
        raise ValueError(f"{goal} is not reachable from {start}")
    actions, cells, cell = [], [], goal
    while prev[cell] is not None:
        cells.append(cell)
        cell, a = prev[cell]
        actions.append(a)
    return actions[::-1], cells[::-1]


# --------------------------------------------------------------------------------------
# Episodes
# --------------------------------------------------------------------------------------


def play(env_id: str, mode: str, target: str, levels: int, envs: int, seed: int, **kwargs):
    """Rows of the first ``levels`` episodes to start, walked to ``target`` ("cheese" or
    "corner") along the shortest path."""
    venv = gym.make_vec(env_id, num_envs=envs, distribution_mode=mode, **kwargs)
    level_of = LEVEL_ACCESS[env_id]
    _, info = venv.reset(seed=seed)
    plans: list[list[int]] = [[] for _ in range(envs)]
    rows: list[dict | None] = [None] * envs  # the recorded episode of each env
    done: list[dict] = []
    t = np.zeros(envs, dtype=np.int64)
    started = 0

    def begin(i: int, info) -> None:
        nonlocal started
        plans[i], rows[i], t[i] = [], None, 0
        if started >= levels:
            return
        started += 1
        n, cheese, grid = level_of(venv, i)
        to_cheese, _ = bfs_path(grid, (0, 0), cheese)
        to_corner, corner_cells = bfs_path(grid, (0, 0), (n - 1, n - 1))
        plans[i] = to_cheese if target == "cheese" else to_corner
        rows[i] = {
            "level_seed": int(info["level_seed"][i]),
            "maze_dim": n,
            "d_cheese": len(to_cheese),
            "d_corner": len(to_corner),
            "decision": cheese not in corner_cells,
            "cheese_moved": bool(info["cheese_moved"][i]),
            "cheese": False,
            "corner": bool(info["reached_corner"][i]),
            "steps": 0,
        }

    for i in range(envs):
        begin(i, info)
    restart = np.zeros(envs, dtype=bool)
    while any(r is not None for r in rows):
        a = np.array([plans[i][t[i]] if t[i] < len(plans[i]) else NOOP for i in range(envs)])
        _, _, terminated, truncated, info = venv.step(a)
        for i in range(envs):
            if restart[i]:  # NEXT_STEP autoreset: this step started the next episode
                begin(i, info)
                continue
            t[i] += 1
            row = rows[i]
            if row is not None:
                row["steps"] += 1
                row["cheese"] |= bool(info["cheese_collected"][i])
                row["corner"] |= bool(info["reached_corner"][i])
                if terminated[i] or truncated[i]:
                    done.append(row)
                    rows[i] = None
        restart = np.asarray(terminated) | np.asarray(truncated)
    venv.close()
    return done


def _quantiles(x) -> dict:
    x = np.asarray(x, dtype=np.float64)
    return {
        "mean": float(x.mean()),
        "p10": float(np.quantile(x, 0.1)),
        "median": float(np.median(x)),
        "p90": float(np.quantile(x, 0.9)),
        "max": float(x.max()),
    }


def _rate(rows, key) -> float:
    return float(np.mean([r[key] for r in rows])) if rows else float("nan")


def placement_kwargs(placement: str, corner_size: int) -> dict:
    if placement == "stock":
        return {"rand_fraction": 1.0}
    return {"rand_fraction": 0.0, "corner_size": corner_size}


def run_stats(env_id: str, mode: str, placement: str, args) -> tuple[dict, dict]:
    """One backend, mode and placement: the summary and the samples the tests compare."""
    common = dict(levels=args.levels, envs=args.envs, seed=args.seed)
    common.update(placement_kwargs(placement, args.corner_size))
    cheese = play(env_id, mode, "cheese", **common)
    corner = play(env_id, mode, "corner", corner_terminates=True, **common)
    dims = Counter(r["maze_dim"] for r in cheese)
    decision = [r for r in corner if r["decision"]]
    samples = {
        "maze_dim": [r["maze_dim"] for r in cheese],
        "d_cheese": [r["d_cheese"] for r in cheese],
        "d_corner": [r["d_corner"] for r in cheese],
        "decision": [r["decision"] for r in cheese],
        "cheese_walker_cheese": [r["cheese"] for r in cheese],
        "corner_walker_corner": [r["corner"] for r in corner],
        "corner_walker_cheese": [r["cheese"] for r in corner],
    }
    summary = {
        "levels": len(cheese),
        "maze_dim": {str(k): dims[k] for k in sorted(dims)},
        "maze_dim_mean": float(np.mean(samples["maze_dim"])),
        "d_cheese": _quantiles(samples["d_cheese"]),
        "d_corner": _quantiles(samples["d_corner"]),
        "decision_share": _rate(cheese, "decision"),
        "cheese_moved_share": _rate(cheese, "cheese_moved"),
        "cheese_walker_cheese": _rate(cheese, "cheese"),
        "cheese_walker_corner": _rate(cheese, "corner"),
        "cheese_walker_steps_minus_bfs": float(
            np.mean([r["steps"] - r["d_cheese"] for r in cheese])
        ),
        "corner_walker_corner": _rate(corner, "corner"),
        "corner_walker_cheese": _rate(corner, "cheese"),
        "corner_walker_decision_levels": len(decision),
        "corner_walker_decision_corner": _rate(decision, "corner"),
        "corner_walker_decision_cheese": _rate(decision, "cheese"),
    }
    return summary, samples


# --------------------------------------------------------------------------------------
# Two-sample tests (no scipy: torch's regularised gamma and math.erfc)
# --------------------------------------------------------------------------------------


def chi2_sf(x: float, df: int) -> float:
    """P(X >= x) for a chi-square variable with ``df`` degrees of freedom."""
    if df <= 0:
        return 1.0
    return float(
        torch.special.gammaincc(
            torch.tensor(df / 2, dtype=torch.float64), torch.tensor(x / 2, dtype=torch.float64)
        )
    )


def chi2_homogeneity(a, b) -> dict:
    """Do two samples of categories come from one distribution?  Chi-square test of the
    2 x K table (categories seen in neither sample dropped)."""
    ca, cb = Counter(a), Counter(b)
    keys = sorted(set(ca) | set(cb))
    na, nb = len(a), len(b)
    stat = 0.0
    for k in keys:
        total = ca[k] + cb[k]
        for count, n in ((ca[k], na), (cb[k], nb)):
            expected = total * n / (na + nb)
            stat += (count - expected) ** 2 / expected
    df = len(keys) - 1
    return {"test": "chi-square", "statistic": stat, "df": df, "p": chi2_sf(stat, df)}


def ks_2samp(a, b) -> dict:
    """Two-sample Kolmogorov-Smirnov test, asymptotic p-value (Stephens' correction)."""
    a, b = np.sort(np.asarray(a, float)), np.sort(np.asarray(b, float))
    grid = np.concatenate((a, b))
    cdf_a = np.searchsorted(a, grid, side="right") / len(a)
    cdf_b = np.searchsorted(b, grid, side="right") / len(b)
    d = float(np.abs(cdf_a - cdf_b).max())
    ne = len(a) * len(b) / (len(a) + len(b))
    lam = (math.sqrt(ne) + 0.12 + 0.11 / math.sqrt(ne)) * d
    p = 2 * sum((-1) ** (k - 1) * math.exp(-2 * k * k * lam * lam) for k in range(1, 101))
    return {"test": "KS", "statistic": d, "p": float(min(1.0, max(0.0, p)) if d > 0 else 1.0)}


def z_means(a, b) -> dict:
    """Two-sample z-test of the means (unequal variances; large samples)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    se = (
        math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)) if min(len(a), len(b)) > 1 else 0
    )
    diff = float(a.mean() - b.mean())
    if se == 0:
        return {"test": "z (means)", "statistic": 0.0, "p": 1.0 if diff == 0 else 0.0}
    z = diff / se
    return {"test": "z (means)", "statistic": z, "p": math.erfc(abs(z) / math.sqrt(2))}


def z_proportions(a, b) -> dict:
    """Two-proportion z-test (pooled)."""
    na, nb = len(a), len(b)
    pa, pb = float(np.mean(a)), float(np.mean(b))
    pooled = (pa * na + pb * nb) / (na + nb)
    se = math.sqrt(pooled * (1 - pooled) * (1 / na + 1 / nb))
    if se == 0:
        return {"test": "z (proportions)", "statistic": 0.0, "p": 1.0}
    z = (pa - pb) / se
    return {"test": "z (proportions)", "statistic": z, "p": math.erfc(abs(z) / math.sqrt(2))}


# statistic -> the test that compares its two samples
TESTS = {
    "maze_dim": chi2_homogeneity,
    "d_cheese": ks_2samp,
    "d_cheese_mean": z_means,
    "d_corner": ks_2samp,
    "d_corner_mean": z_means,
    "decision": z_proportions,
    "cheese_walker_cheese": z_proportions,
    "corner_walker_corner": z_proportions,
    "corner_walker_cheese": z_proportions,
}


def compare(a: dict, b: dict) -> dict:
    """Every test of ``TESTS`` on the samples of two backends."""
    out = {}
    for name, test in TESTS.items():
        key = name.removesuffix("_mean")
        out[name] = test(a[key], b[key])
    return out


# --------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------


def machine() -> dict:
    """The hardware and versions (``throughput.hardware_info``) and the load at the start."""
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    from throughput import hardware_info

    info = hardware_info(torch.device("cpu"))
    info["load_average"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    return info


def _pct(x: float) -> str:
    return "—" if math.isnan(x) else f"{x:.1%}"


def _q(d: dict) -> str:
    return f"{d['mean']:.1f} ({d['p10']:.0f} / {d['median']:.0f} / {d['p90']:.0f} / {d['max']:.0f})"


ROWS = (  # label, formatter, the test of COMPARISONS that belongs to the row
    ("levels per run", lambda s: f"{s['levels']}", None),
    ("maze_dim: mean", lambda s: f"{s['maze_dim_mean']:.2f}", None),
    (
        "maze_dim: counts",
        lambda s: " ".join(f"{k}:{v}" for k, v in s["maze_dim"].items()),
        "maze_dim",
    ),
    ("start->cheese: mean (p10 / med / p90 / max)", lambda s: _q(s["d_cheese"]), "d_cheese"),
    ("start->corner: mean (p10 / med / p90 / max)", lambda s: _q(s["d_corner"]), "d_corner"),
    ("decision levels", lambda s: _pct(s["decision_share"]), "decision"),
    ("cheese walker: cheese", lambda s: _pct(s["cheese_walker_cheese"]), "cheese_walker_cheese"),
    (
        "cheese walker: steps - BFS length (mean)",
        lambda s: f"{s['cheese_walker_steps_minus_bfs']:.2f}",
        None,
    ),
    ("corner walker: corner", lambda s: _pct(s["corner_walker_corner"]), "corner_walker_corner"),
    ("corner walker: cheese", lambda s: _pct(s["corner_walker_cheese"]), "corner_walker_cheese"),
    (
        "corner walker, decision levels: corner / cheese",
        lambda s: (
            _pct(s["corner_walker_decision_corner"])
            + " / "
            + _pct(s["corner_walker_decision_cheese"])
        ),
        None,
    ),
)


def table(stats: dict, comparison: dict | None, threshold: float) -> str:
    """One mode and placement: a column per backend, then the test's p-value."""
    names = list(stats)
    head = "| statistic | " + " | ".join(names) + " |"
    rule = "| --- |" + " ---: |" * len(names)
    if comparison is not None:
        head, rule = head + " p (test) |", rule + " ---: |"
    lines = [head, rule]
    for label, fmt, test in ROWS:
        line = f"| {label} | " + " | ".join(fmt(stats[n]) for n in names) + " |"
        if comparison is not None:
            cell = ""
            if test is not None:
                t = comparison[test]
                cell = f"{t['p']:.3g} ({t['test']})" + (
                    " **differs**" if t["p"] < threshold else ""
                )
            line += f" {cell} |"
        lines.append(line)
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    names = {env_id: env_id.split("/")[-1] for env_id in args.env_id}
    stats: dict[str, dict] = {}
    comparisons: dict[str, dict] = {}
    for mode in args.modes:
        for placement in PLACEMENTS:
            key = f"{mode} {placement}"
            stats[key], samples = {}, {}
            for env_id, name in names.items():
                print(f"{name} {key}: {args.levels} levels x 2 walkers ...", flush=True)
                stats[key][name], samples[name] = run_stats(env_id, mode, placement, args)
            if len(samples) == 2:
                comparisons[key] = compare(*samples.values())
    n_tests = sum(len(c) for c in comparisons.values())
    threshold = args.alpha / max(1, n_tests)
    differs = [
        {"run": key, "statistic": name, **test}
        for key, comparison in comparisons.items()
        for name, test in comparison.items()
        if test["p"] < threshold
    ]
    for key in stats:
        where = "stock placement" if key.endswith("stock") else f"corner k={args.corner_size}"
        print(f"\n### {key.split()[0]}, {where}\n")
        print(table(stats[key], comparisons.get(key), threshold))
    if comparisons:
        print(
            f"\n{n_tests} tests; a difference is flagged at p < {args.alpha} / {n_tests} = "
            f"{threshold:.2g}: {len(differs)} flagged"
            + "".join(f"\n  {d['run']}: {d['statistic']} p={d['p']:.3g}" for d in differs)
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "maze_procgen_stats",
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": machine(),
        "stats": stats,
        "comparisons": comparisons,
        "tests": n_tests,
        "threshold": threshold,
        "differs": differs,
        "wall_s": time.perf_counter() - t0,
    }
    args.out.write_text(json.dumps(payload, indent=2))
    print(f"\nwrote {args.out} ({payload['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
