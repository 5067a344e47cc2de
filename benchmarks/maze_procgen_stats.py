#!/usr/bin/env python
"""Maze level statistics and scripted policies, per backend and mode (fidelity benchmark).

For each ``--env-id`` (default ``coinrun_mg/ProcgenMaze-v0``) and each mode (easy, hard),
the first ``--levels`` episodes to start in a ``--envs``-env vector env are played by a
scripted policy that knows the maze (breadth-first search over the level's open cells):

1. **stock placement** (``rand_fraction=1``: the cheese anywhere but the start, as stock
   procgen puts it), the *cheese walker* (shortest path to the cheese).  Its levels give
   the maze_dim distribution, the shortest-path lengths start->cheese and start->corner
   (the top-right cell) and the share of *decision levels* (the cheese off the
   start->corner path, so the two paths part somewhere);
2. the same placement, the *corner walker* (shortest path to the top-right cell), with
   ``corner_terminates=True`` so an episode ends when it gets there;
3. **corner placement** (``rand_fraction=0``, ``--corner-size`` k), the cheese walker.

Success is the event within the 500-step timeout: the cheese (``cheese_collected``) or the
corner region (``reached_corner``).  Episodes are counted from the moment they start and
all of them are waited for, so short episodes are not over-represented; each run is its
own sample of levels (the same procgen sequences, but which episodes start first depends
on the policy).  Another env with the same infos (``maze_dim``, ``cheese_x``,
``cheese_y``, ``cheese_collected``, ``reached_corner``) is compared side by side by adding
its level accessor to ``LEVEL_ACCESS``; the native ``coinrun_mg/Maze-v0`` is there already.
Prints markdown tables and writes JSON (with machine details) to ``--out``.

    python benchmarks/maze_procgen_stats.py                 # 1000 levels per mode
    python benchmarks/maze_procgen_stats.py --levels 200
    python benchmarks/maze_procgen_stats.py --env-id coinrun_mg/ProcgenMaze-v0 \\
        --env-id coinrun_mg/Maze-v0                         # both backends side by side
"""

from __future__ import annotations

import argparse
import json
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

PROCGEN_ID = "coinrun_mg/ProcgenMaze-v0"
NOOP = 4
MODES = ("easy", "hard")
TIMEOUT = 500
# procgen's action ids for the four moves (x right, y up).
MOVES = ((-1, 0, 0), (1, 0, 6), (0, -1, 3), (0, 1, 5))


NATIVE_ID = "coinrun_mg/Maze-v0"


def _procgen_level(venv, info, i: int):
    cheese = (int(info["cheese_x"][i]), int(info["cheese_y"][i]))
    return int(info["maze_dim"][i]), venv.unwrapped.core.open_cells(i), cheese


def _native_level(venv, info, i: int):
    s = venv.unwrapped.core.state  # world cells; the maze starts at the margin
    m, n = int(s.margin[i]), int(s.maze_dim[i])
    grid = (~s.wall[i, m : m + n, m : m + n]).cpu().numpy()
    return n, grid, (int(s.cheese_x[i]) - m, int(s.cheese_y[i]) - m)


# env id -> (vector env, infos, index) -> the current level's maze_dim, open cells (bool
# [x, y], y up, maze coordinates) and cheese cell.
LEVEL_ACCESS = {PROCGEN_ID: _procgen_level, NATIVE_ID: _native_level}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--levels", type=int, default=1000, help="levels per mode and run (1000)")
    p.add_argument("--envs", type=int, default=50, help="vector envs (50)")
    p.add_argument("--corner-size", type=int, default=1, help="corner region for run 3 (1)")
    p.add_argument(
        "--env-id", action="append", default=None, help=f"env ids to compare ({PROCGEN_ID})"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--out", type=Path, default=REPO_ROOT / "benchmarks" / "out" / "maze_procgen_stats.json"
    )
    args = p.parse_args(argv)
    args.env_id = args.env_id or [PROCGEN_ID]
    if min(args.levels, args.envs, args.corner_size) < 1:
        p.error("--levels, --envs and --corner-size must be >= 1")
    unknown = [e for e in args.env_id if e not in LEVEL_ACCESS]
    if unknown:
        p.error(f"no grid accessor for {unknown}; add one to LEVEL_ACCESS")
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
        n, grid, cheese = level_of(venv, info, i)
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
        restart = terminated | truncated
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


def mode_stats(env_id: str, mode: str, args) -> dict:
    common = dict(levels=args.levels, envs=args.envs, seed=args.seed)
    stock = play(env_id, mode, "cheese", rand_fraction=1.0, **common)
    corner = play(env_id, mode, "corner", rand_fraction=1.0, corner_terminates=True, **common)
    placed = play(env_id, mode, "cheese", rand_fraction=0.0, corner_size=args.corner_size, **common)
    dims = Counter(r["maze_dim"] for r in stock)
    decision = [r for r in corner if r["decision"]]
    rate = lambda rows, key: float(np.mean([r[key] for r in rows])) if rows else float("nan")  # noqa: E731
    return {
        "levels": len(stock),
        "maze_dim": {str(k): dims[k] for k in sorted(dims)},
        "maze_dim_mean": float(np.mean([r["maze_dim"] for r in stock])),
        "d_cheese_stock": _quantiles([r["d_cheese"] for r in stock]),
        "d_corner": _quantiles([r["d_corner"] for r in stock]),
        "decision_share": rate(stock, "decision"),
        "d_cheese_corner_placement": _quantiles([r["d_cheese"] for r in placed]),
        "cheese_walker_stock_cheese": rate(stock, "cheese"),
        "cheese_walker_stock_steps_minus_bfs": float(
            np.mean([r["steps"] - r["d_cheese"] for r in stock])
        ),
        "corner_walker_stock_corner": rate(corner, "corner"),
        "corner_walker_stock_cheese": rate(corner, "cheese"),
        "corner_walker_decision_levels": len(decision),
        "corner_walker_decision_corner": rate(decision, "corner"),
        "corner_walker_decision_cheese": rate(decision, "cheese"),
        "cheese_walker_corner_placement_cheese": rate(placed, "cheese"),
        "cheese_walker_corner_placement_corner": rate(placed, "corner"),
        "corner_placement_cheese_moved": rate(placed, "cheese_moved"),
    }


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


def _q(d: dict) -> str:
    return f"{d['mean']:.1f} ({d['p10']:.0f} / {d['median']:.0f} / {d['p90']:.0f} / {d['max']:.0f})"


def table(stats: dict[str, dict], corner_size: int) -> str:
    rows = [
        ("levels per run", lambda s: f"{s['levels']}"),
        ("maze_dim: mean", lambda s: f"{s['maze_dim_mean']:.2f}"),
        ("maze_dim: counts", lambda s: " ".join(f"{k}:{v}" for k, v in s["maze_dim"].items())),
        ("start->cheese, stock: mean (p10 / med / p90 / max)", lambda s: _q(s["d_cheese_stock"])),
        ("start->corner: mean (p10 / med / p90 / max)", lambda s: _q(s["d_corner"])),
        ("decision levels (cheese off the corner path)", lambda s: f"{s['decision_share']:.1%}"),
        (
            f"start->cheese, corner k={corner_size}: mean (p10 / med / p90 / max)",
            lambda s: _q(s["d_cheese_corner_placement"]),
        ),
        ("cheese walker, stock: cheese", lambda s: f"{s['cheese_walker_stock_cheese']:.1%}"),
        (
            "cheese walker, stock: steps - BFS length (mean)",
            lambda s: f"{s['cheese_walker_stock_steps_minus_bfs']:.2f}",
        ),
        ("corner walker, stock: corner", lambda s: f"{s['corner_walker_stock_corner']:.1%}"),
        ("corner walker, stock: cheese", lambda s: f"{s['corner_walker_stock_cheese']:.1%}"),
        (
            "corner walker, decision levels: corner / cheese",
            lambda s: (
                f"{s['corner_walker_decision_corner']:.1%} / "
                f"{s['corner_walker_decision_cheese']:.1%}"
            ),
        ),
        (
            f"cheese walker, corner k={corner_size}: cheese / corner",
            lambda s: (
                f"{s['cheese_walker_corner_placement_cheese']:.1%} / "
                f"{s['cheese_walker_corner_placement_corner']:.1%}"
            ),
        ),
    ]
    names = list(stats)
    lines = [
        "| statistic | " + " | ".join(names) + " |",
        "| --- |" + " ---: |" * len(names),
    ]
    for label, fmt in rows:
        lines.append(f"| {label} | " + " | ".join(fmt(stats[n]) for n in names) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    stats: dict[str, dict] = {}
    for env_id in args.env_id:
        for mode in MODES:
            name = f"{env_id.split('/')[-1]} {mode}"
            print(f"{name}: {args.levels} levels x 3 runs ...", flush=True)
            stats[name] = mode_stats(env_id, mode, args)
    print(table(stats, args.corner_size))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": machine(),
        "stats": stats,
        "wall_s": time.perf_counter() - t0,
    }
    args.out.write_text(json.dumps(payload, indent=2))
    print(f"\nwrote {args.out} ({payload['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
