#!/usr/bin/env python
"""The native core's speed-up over stock procgen, measured in alternating rounds.

``throughput.py`` times every configuration once, procgen first and the native core
minutes later; on a shared machine whose speed drifts by 10-30% within minutes, the
ratio of two such numbers moves by as much.  This script sets both up once and then
alternates short timed windows: each round times procgen at each of ``--procgen-envs``
(its best is the round's yardstick) and the native core at ``--envs``, in the order
procgen-native in even rounds and native-procgen in odd ones, so a steady drift
favours neither.  It reports every round's ratio and their median and range.
``--game maze`` pairs the native ``MazeCore`` with procgen's ``maze``.

    python benchmarks/paired_ratio.py                    # 16384 compiled symbolic, 5 rounds
    python benchmarks/paired_ratio.py --obs pixels --envs 4096 --compile off
    python benchmarks/paired_ratio.py --game maze --procgen-envs 16,64,256
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from throughput import (  # benchmarks/ is on sys.path when run as a script
    COMPILE_WORDS,
    _int_list,
    add_game_argument,
    add_malloc_argument,
    apply_malloc,
    default_out,
    hardware_info,
    import_procgen,
    native_bench,
    procgen_bench,
    resolve_device,
)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_game_argument(p)
    p.add_argument("--device", default="cpu", help="native env device (default: cpu)")
    p.add_argument("--envs", type=int, default=16384, help="native env count (default: 16384)")
    p.add_argument("--obs", default="symbolic", choices=("symbolic", "pixels"))
    p.add_argument(
        "--compile",
        default="on",
        choices=tuple(COMPILE_WORDS),
        help="the core's compile=... (default: on; it compiles during setup)",
    )
    p.add_argument(
        "--procgen-envs",
        type=_int_list,
        default=[64, 256, 1024],
        help="procgen env counts timed each round; the fastest is the round's yardstick "
        "(default: 64,256,1024, where procgen peaks on 2 cores)",
    )
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds (default: 5)")
    p.add_argument(
        "--seconds", type=float, default=3.0, help="timed seconds per window (default: 3)"
    )
    p.add_argument("--warmup", type=int, default=5, help="untimed steps per window (default: 5)")
    p.add_argument("--threads", type=int, default=None, help="torch and procgen threads")
    p.add_argument(
        "--distribution-mode", default="hard", choices=("easy", "hard"), help="(default: hard)"
    )
    p.add_argument("--seed", type=int, default=0, help="env and action seed (default: 0)")
    add_malloc_argument(p)
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON results file (default: benchmarks/out/paired_ratio.json, "
        "paired_ratio_maze.json for --game maze)",
    )
    args = p.parse_args(argv)
    args.out = args.out or default_out("paired_ratio", args.game)
    if args.rounds < 1 or args.envs < 1 or args.seconds <= 0 or args.warmup < 0:
        p.error("need --rounds >= 1, --envs >= 1, --seconds > 0 and --warmup >= 0")
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be >= 1")
    # What throughput.timed_run reads: windows of about --seconds, at least 5 steps.
    args.steps, args.min_steps, args.max_steps = None, 5, 1_000_000
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    device = resolve_device(args.device)
    procgen, why = import_procgen()
    if procgen is None:
        print(f"error: {why}", file=sys.stderr)
        return 2
    hw = hardware_info(device)
    hw["malloc"] = apply_malloc(args)
    t_start = time.perf_counter()

    # Everything is set up before the first timed window; procgen's envs are small.
    yardsticks = {n: procgen_bench(procgen, n, args, threads) for n in args.procgen_envs}
    native = native_bench(args.envs, args.obs, device, args, args.compile)
    label = f"{native.result['backend']} {args.obs} x{args.envs}"

    rounds = []
    for i in range(args.rounds):
        order = ["procgen", "native"] if i % 2 == 0 else ["native", "procgen"]
        row = {"round": i, "order": order, "procgen": {}}
        for part in order:
            if part == "native":
                row["native_steps_per_s"] = native.run(args)["steps_per_s"]
            else:
                for n, bench in yardsticks.items():
                    row["procgen"][n] = bench.run(args)["steps_per_s"]
        best_n = max(row["procgen"], key=row["procgen"].get)
        row["procgen_best_envs"] = best_n
        row["procgen_best_steps_per_s"] = row["procgen"][best_n]
        row["ratio"] = row["native_steps_per_s"] / row["procgen_best_steps_per_s"]
        rounds.append(row)
        print(
            f"round {i}: procgen best {row['procgen_best_steps_per_s']:,.0f} steps/s "
            f"({best_n} envs), {label} {row['native_steps_per_s']:,.0f} steps/s: "
            f"{row['ratio']:.1f}x",
            flush=True,
        )

    ratios = [r["ratio"] for r in rounds]
    summary = {
        "ratio_median": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "native_steps_per_s_median": statistics.median(r["native_steps_per_s"] for r in rounds),
        "procgen_best_steps_per_s_median": statistics.median(
            r["procgen_best_steps_per_s"] for r in rounds
        ),
    }
    print(
        f"\n{label} vs procgen's best, {args.rounds} rounds: median {summary['ratio_median']:.1f}x "
        f"(range {summary['ratio_min']:.1f}-{summary['ratio_max']:.1f}x); medians "
        f"{summary['native_steps_per_s_median']:,.0f} vs "
        f"{summary['procgen_best_steps_per_s_median']:,.0f} steps/s"
    )
    hw["total_runtime_s"] = time.perf_counter() - t_start
    payload = {
        "benchmark": "paired_ratio",
        "game": args.game,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "hardware": hw,
        "native_setup": native.result,
        "rounds": rounds,
        "summary": summary,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out} (total {hw['total_runtime_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
