#!/usr/bin/env python
"""The procgen backend (``coinrun_mg/ProcgenCoinRun-v0``): its overhead and its levels.

Two parts, in one run:

1. **Throughput** at ``--envs`` (64) environments with random actions: raw
   ``procgen.ProcgenGym3Env`` (``act`` + ``observe``) against the backend's vector env
   (``step``: coin moving at episode starts, end tracking, NEXT_STEP autoreset, infos),
   at ``rand_fraction`` 0.02 (the headline ratio; goal <= 1.5x), and, for context, at
   fraction 1 (every level tracked) and with ``track_agent=True`` (a state read per env
   and step).  ``--obs-mode symbolic`` measures the same configurations with
   ``obs_mode="symbolic"`` (the native planes drawn from procgen's state: a state read
   per env and step, and the native observation); ``both`` measures pixels, then
   symbolic, and compares the two modes config by config (symbolic time / pixel time,
   each taken relative to its own paired raw-procgen blocks, so load drift between the
   two measurements cancels).  Timing alternates blocks of ``--block`` steps between raw procgen and
   the configuration being measured (raw first on even rounds, second on odd ones) for
   ``--rounds`` rounds, so load from other processes hits both alike; the ratio is
   backend time / raw time for the same number of steps.  Both use procgen's default 4
   worker threads and draw actions with numpy inside the timed loop.
2. **Levels**, native (``coinrun_mg/CoinRun-v0``, symbolic, CPU) against procgen, hard
   mode, ``--levels`` (1000) levels each: level length (``end_x``), where a moved coin
   goes (``rand_fraction=1``, section placement: ``coin_x``, its share at x = 5, and
   ``coin_x / end_x``) and the share of levels a scripted policy completes (collects the
   coin at ``rand_fraction=0``) within 1000 steps.  The scripted policy is the same for
   both: action 8 (right + jump) every step.  Level facts are read from the reset/restart
   infos of a ``max_episode_steps=1`` run (every other step starts new levels); the
   completion share counts the first ``--levels`` episodes to *start* (waiting for all of
   them to finish), so short episodes are not over-represented.

Prints markdown tables and writes JSON (with machine details) to ``--out``.

    python benchmarks/procgen_backend.py                 # about 1-2 minutes on 2 cores
    python benchmarks/procgen_backend.py --rounds 2 --levels 200
    python benchmarks/procgen_backend.py --obs-mode both --envs 8 --no-levels
                                  symbolic vs pixels vs raw procgen, in one run
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import time
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

NATIVE_ID = "coinrun_mg/CoinRun-v0"
PROCGEN_ID = "coinrun_mg/ProcgenCoinRun-v0"
NUM_ACTIONS = 15
RIGHT_JUMP = 8


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--envs", type=int, default=64, help="envs for the throughput part (64)")
    p.add_argument("--block", type=int, default=200, help="steps per timed block (200)")
    p.add_argument("--rounds", type=int, default=5, help="alternating timed rounds (5)")
    p.add_argument("--levels", type=int, default=1000, help="levels per backend (1000)")
    p.add_argument(
        "--native-envs", type=int, default=256, help="native envs for the level part (256)"
    )
    p.add_argument(
        "--procgen-envs", type=int, default=64, help="procgen envs for the level part (64)"
    )
    p.add_argument(
        "--obs-mode",
        choices=("pixels", "symbolic", "both"),
        default="pixels",
        help="the backend's observations in the throughput part (pixels)",
    )
    p.add_argument("--view-size", type=int, default=13, help="symbolic view size (13)")
    p.add_argument("--no-levels", action="store_true", help="skip the level statistics part")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--out", type=Path, default=REPO_ROOT / "benchmarks" / "out" / "procgen_backend.json"
    )
    args = p.parse_args(argv)
    if min(args.envs, args.block, args.rounds, args.levels) < 1:
        p.error("--envs, --block, --rounds and --levels must be >= 1")
    return args


def import_procgen():
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # old gym's banner
            import procgen
    except ImportError:
        sys.exit('procgen is not installed: pip install "coinrun-mg[procgen]"')
    return procgen


# --------------------------------------------------------------------------------------
# Throughput
# --------------------------------------------------------------------------------------


def throughput(procgen, args) -> list[dict]:
    n = args.envs
    rng = np.random.default_rng(args.seed)
    raw = procgen.ProcgenGym3Env(
        num=n, env_name="coinrun", distribution_mode="hard", rand_seed=args.seed
    )
    raw.observe()

    def raw_block():
        for _ in range(args.block):
            raw.act(rng.integers(0, NUM_ACTIONS, n, dtype=np.int32))
            raw.observe()

    base = [
        ("fraction 0.02", dict(rand_fraction=0.02)),
        ("fraction 1.0", dict(rand_fraction=1.0)),
        ("fraction 0.02, track_agent", dict(rand_fraction=0.02, track_agent=True)),
    ]
    modes = ("pixels", "symbolic") if args.obs_mode == "both" else (args.obs_mode,)
    configs = []
    for mode in modes:
        for label, kwargs in base:
            if mode == "symbolic":
                if "track_agent" in kwargs:
                    continue  # symbolic views read every env every step anyway
                label = f"symbolic {args.view_size}, {label}"
                kwargs = dict(kwargs, obs_mode="symbolic", view_size=args.view_size)
            configs.append((label, kwargs))
    results = []
    for label, kwargs in configs:
        venv = gym.make_vec(PROCGEN_ID, num_envs=n, distribution_mode="hard", **kwargs)
        venv.reset(seed=args.seed)
        core = venv.unwrapped.core
        ended = [0]

        def backend_block(venv=venv, ended=ended):
            for _ in range(args.block):
                out = venv.step(rng.integers(0, NUM_ACTIONS, n))
                ended[0] += int((out[2] | out[3]).sum())

        raw_block()  # warm-up of both
        backend_block()
        reads0, writes0, ended[0] = core.state_reads, core.state_writes, 0
        t_raw = t_backend = 0.0
        for r in range(args.rounds):
            order = (raw_block, backend_block) if r % 2 == 0 else (backend_block, raw_block)
            for fn in order:
                t0 = time.perf_counter()
                fn()
                dt = time.perf_counter() - t0
                if fn is raw_block:
                    t_raw += dt
                else:
                    t_backend += dt
        steps = args.block * args.rounds
        results.append(
            {
                "config": label,
                "envs": n,
                "steps": steps,
                "raw_steps_per_s": n * steps / t_raw,
                "backend_steps_per_s": n * steps / t_backend,
                "ratio": t_backend / t_raw,
                "episodes_ended": ended[0],
                "state_reads_per_step": (core.state_reads - reads0) / steps,
                "state_writes_per_step": (core.state_writes - writes0) / steps,
                **{k: v for k, v in kwargs.items()},
            }
        )
        venv.close()
    raw.close()
    return results


# --------------------------------------------------------------------------------------
# Level statistics
# --------------------------------------------------------------------------------------


def _make(env_id: str, num_envs: int, **kwargs):
    if env_id == NATIVE_ID:
        kwargs = dict(device="cpu", obs_mode="symbolic", **kwargs)
    return gym.make_vec(env_id, num_envs=num_envs, distribution_mode="hard", **kwargs)


def level_facts(env_id: str, num_envs: int, levels: int, seed: int) -> dict[str, np.ndarray]:
    """end_x, coin_x and coin_randomized of ``levels`` fresh levels at rand_fraction=1."""
    venv = _make(env_id, num_envs, rand_fraction=1.0, max_episode_steps=1)
    _, info = venv.reset(seed=seed)
    rows = {"end_x": [], "coin_x": [], "coin_randomized": []}
    noop = np.full(num_envs, 4)
    while len(rows["end_x"]) < levels:
        for key in rows:
            rows[key].extend(np.asarray(info[key]).tolist())
        venv.step(noop)  # every episode times out ...
        _, _, _, _, info = venv.step(noop)  # ... and every env starts a new level
    venv.close()
    return {k: np.asarray(v[:levels]) for k, v in rows.items()}


def completion(env_id: str, num_envs: int, levels: int, seed: int) -> dict:
    """Outcomes of the first ``levels`` episodes (by start) under the right+jump policy."""
    venv = _make(env_id, num_envs, rand_fraction=0.0)
    venv.reset(seed=seed)
    started = num_envs  # episodes started so far; env i's current one has index ticket[i]
    ticket = np.arange(num_envs)
    lengths = np.zeros(num_envs, dtype=np.int64)
    outcome: dict[int, tuple] = {}
    restarting = np.zeros(num_envs, dtype=bool)
    action = np.full(num_envs, RIGHT_JUMP)
    while len(outcome) < levels:
        _, _, terminated, truncated, info = venv.step(action)
        for i in np.flatnonzero(restarting):  # NEXT_STEP: this step began a new episode
            ticket[i], started = started, started + 1
            lengths[i] = 0
        lengths[~restarting] += 1
        done = terminated | truncated
        for i in np.flatnonzero(done):
            if ticket[i] < levels:
                outcome[int(ticket[i])] = (
                    bool(info["coin_collected"][i]),
                    bool(info["died"][i]),
                    bool(info["timed_out"][i]),
                    int(lengths[i]),
                )
        restarting = done
    venv.close()
    a = np.array([outcome[k] for k in range(levels)])
    return {
        "completed": float(a[:, 0].mean()),
        "died": float(a[:, 1].mean()),
        "timed_out": float(a[:, 2].mean()),
        "mean_steps": float(a[:, 3].mean()),
    }


def summarize(facts: dict[str, np.ndarray]) -> dict:
    end_x = facts["end_x"]
    moved = facts["coin_randomized"].astype(bool)
    coin = facts["coin_x"][moved]
    q = lambda v, p: float(np.percentile(v, p))  # noqa: E731
    return {
        "levels": int(len(end_x)),
        "end_x_mean": float(end_x.mean()),
        "end_x_p10": q(end_x, 10),
        "end_x_median": q(end_x, 50),
        "end_x_p90": q(end_x, 90),
        "end_x_min": int(end_x.min()),
        "end_x_max": int(end_x.max()),
        "moved_share_at_fraction_1": float(moved.mean()),
        "moved_coin_x_mean": float(coin.mean()),
        "moved_coin_x_median": q(coin, 50),
        "moved_coin_at_x5_share": float((coin == 5).mean()),
        "moved_coin_x_over_end_x_mean": float((coin / end_x[moved]).mean()),
    }


# --------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------


def symbolic_vs_pixels(rows: list[dict]) -> list[dict]:
    """Per configuration measured in both modes: symbolic backend time / pixel backend
    time, through each one's ratio to raw procgen (``ratio_symbolic / ratio_pixels``)."""
    pixels = {r["config"]: r for r in rows if r.get("obs_mode", "pixels") == "pixels"}
    out = []
    for r in rows:
        if r.get("obs_mode") != "symbolic":
            continue
        base = r["config"].split(", ", 1)[1]  # "symbolic 13, fraction 0.02" -> "fraction 0.02"
        if base in pixels:
            p = pixels[base]
            out.append(
                {
                    "config": base,
                    "view_size": r["view_size"],
                    "raw_steps_per_s": (r["raw_steps_per_s"] + p["raw_steps_per_s"]) / 2,
                    "pixels_steps_per_s": p["backend_steps_per_s"],
                    "symbolic_steps_per_s": r["backend_steps_per_s"],
                    "symbolic_over_pixels_time": r["ratio"] / p["ratio"],
                }
            )
    return out


def modes_table(rows: list[dict]) -> str:
    lines = [
        "| config | raw procgen steps/s | pixels steps/s | symbolic steps/s "
        "| symbolic/pixels time |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['config']} | {r['raw_steps_per_s']:,.0f} | {r['pixels_steps_per_s']:,.0f} "
            f"| {r['symbolic_steps_per_s']:,.0f} | {r['symbolic_over_pixels_time']:.2f}x |"
        )
    return "\n".join(lines)


def machine() -> dict:
    """The hardware and versions (``throughput.hardware_info``) and the load at the start."""
    from throughput import hardware_info  # benchmarks/ is on sys.path when run as a script

    info = hardware_info(torch.device("cpu"))
    info["load_average"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    return info


def throughput_table(rows: list[dict]) -> str:
    lines = [
        "| backend config | envs | raw procgen steps/s | backend steps/s | backend/raw time "
        "| state reads/step | state writes/step |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['config']} | {r['envs']} | {r['raw_steps_per_s']:,.0f} "
            f"| {r['backend_steps_per_s']:,.0f} | {r['ratio']:.2f}x "
            f"| {r['state_reads_per_step']:.2f} | {r['state_writes_per_step']:.2f} |"
        )
    return "\n".join(lines)


def levels_table(native: dict, proc: dict) -> str:
    rows = [
        ("levels", "levels", "{:d}"),
        ("end x: mean", "end_x_mean", "{:.1f}"),
        ("end x: p10 / median / p90", None, None),
        ("end x: min / max", None, None),
        ("moved coin x (section placement): mean", "moved_coin_x_mean", "{:.1f}"),
        ("moved coin x: median", "moved_coin_x_median", "{:.0f}"),
        ("moved coin at x = 5 (first section)", "moved_coin_at_x5_share", "{:.1%}"),
        ("moved coin x / end x: mean", "moved_coin_x_over_end_x_mean", "{:.2f}"),
        ("levels with a moved coin at fraction 1", "moved_share_at_fraction_1", "{:.1%}"),
        ("right+jump policy: coin within 1000 steps", "completed", "{:.1%}"),
        ("right+jump policy: died", "died", "{:.1%}"),
        ("right+jump policy: timed out", "timed_out", "{:.1%}"),
        ("right+jump policy: mean episode steps", "mean_steps", "{:.1f}"),
    ]
    lines = ["| level statistic (hard mode) | native | procgen |", "| --- | ---: | ---: |"]
    for label, key, fmt in rows:
        if key is None and "p10" in label:
            cells = [
                f"{d['end_x_p10']:.0f} / {d['end_x_median']:.0f} / {d['end_x_p90']:.0f}"
                for d in (native, proc)
            ]
        elif key is None:
            cells = [f"{d['end_x_min']} / {d['end_x_max']}" for d in (native, proc)]
        else:
            cells = [fmt.format(d[key]) for d in (native, proc)]
        lines.append(f"| {label} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    procgen = import_procgen()
    t0 = time.perf_counter()
    print(
        f"throughput: {args.envs} envs, {args.rounds} x {args.block} steps per side ...", flush=True
    )
    tp = throughput(procgen, args)
    print(throughput_table(tp), "\n", flush=True)
    modes = symbolic_vs_pixels(tp)
    if modes:
        print(modes_table(modes), "\n", flush=True)
    headline = tp[0]
    print(
        f"overhead ratio at rand_fraction 0.02 ({headline['config']}; backend time / raw "
        f"procgen time): {headline['ratio']:.2f}x (goal for pixels <= 1.5x)\n",
        flush=True,
    )

    stats = {}
    for name, env_id, n in (
        ("native", NATIVE_ID, args.native_envs),
        ("procgen", PROCGEN_ID, args.procgen_envs),
    ):
        if args.no_levels:
            break
        print(f"levels: {name} ...", flush=True)
        s = summarize(level_facts(env_id, n, args.levels, args.seed))
        s.update(completion(env_id, n, args.levels, args.seed))
        stats[name] = s
    if stats:
        print(levels_table(stats["native"], stats["procgen"]))

    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": machine(),
        "throughput": tp,
        "overhead_ratio_fraction_0.02": headline["ratio"],
        "symbolic_vs_pixels": modes,
        "levels": stats,
        "wall_s": time.perf_counter() - t0,
    }
    args.out.write_text(json.dumps(payload, indent=2))
    print(f"\nwrote {args.out} ({payload['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
