#!/usr/bin/env python
"""What does the oracle-regret score cost?  ``R*`` per level, for both games.

``plr_score='oracle'`` needs the best discounted return of every new level a run plays
(``agents/level_replay.py``, :func:`oracle_returns`): Maze by breadth-first shortest
paths, CoinRun by the solver's beam search, one batch per PPO iteration (the new levels
that finished there).  This times both on batches of fresh level seeds of the quick
profile's training configuration and prints milliseconds per level for each batch size,
to set against a PPO iteration (a trained CoinRun quick agent finishes some hundreds of
new levels per iteration).

    python benchmarks/oracle_cost.py --levels 32,128,512 --threads 1
"""

from __future__ import annotations

import argparse
import time

import torch

from coinrun_mg.agents import PPOConfig
from coinrun_mg.agents.level_replay import oracle_returns


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--levels", default="64", help="levels per batch, comma-separated sizes (default 64)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.levels.split(",")]
    torch.set_num_threads(args.threads)
    for game in ("maze", "coinrun"):
        config = PPOConfig.from_profile("quick", game=game, device="cpu", rand_fraction=0.02)
        for mode in ("easy", "hard"):
            config = config.replace(distribution_mode=mode)
            oracle_returns(torch.tensor([1, 2]), config)  # warm up
            for size in sizes:
                seeds = torch.arange(size, dtype=torch.int64) * 7919 + 13
                started = time.perf_counter()
                best = oracle_returns(seeds, config)
                seconds = time.perf_counter() - started
                solved, mean = float((best > 0).double().mean()), float(best.mean())
                print(
                    f"{game:8} {mode:5} {size:5} levels: {1000 * seconds / size:8.2f} ms/level, "
                    f"{seconds:6.2f} s per batch, solved {solved:.2f}, mean R* {mean:.2f}"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
