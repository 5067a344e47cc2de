#!/usr/bin/env python
"""Learning curve of PPO's quick profile: training-distribution goal rate versus steps.

``--game maze`` trains Maze's quick profile instead; "coin rate" is then the cheese rate.

Trains ``PPOConfig.from_profile("quick")`` (or ``--profile paper``) at one
``--rand-fraction`` for ``--total-steps``, and every ``--eval-every`` steps evaluates the
policy as trained (stochastic, not greedy) on ``--eval-envs`` fresh environments of the
training distribution: each environment's first episode counts once, so long episodes
are not under-counted (level keys start at 1,000,000: levels the training envs are
unlikely to have seen unless ``num_levels`` is small).

Writes to ``--out`` (default ``benchmarks/out/learning_curve_f<fraction>_s<seed>/``):

* ``curve.csv`` -- one row per evaluation: steps, train_wall_s (training time, evaluation
  excluded), coin/died/timeout rates, mean episode length, train_sps, eval_s, peak_rss_mb
  (``resource.getrusage`` maximum resident set of this process).  Rewritten after every
  evaluation, so a killed benchmark leaves its partial curve.
* ``curve.json`` -- the rows, the config, the uniform-random policy's coin rate on the
  same evaluation levels, and the machine (CPU count, load average at start, torch).
* ``curve.png`` -- coin rate versus steps (matplotlib).
* ``run/`` -- the training run (TensorBoard events, config.json, checkpoint.pt).

    python benchmarks/learning_curve.py                         # fraction 0, the profile's steps
    python benchmarks/learning_curve.py --rand-fraction 0.02 --seed 2
    python benchmarks/learning_curve.py --total-steps 65536 --eval-every 32768 --eval-envs 64
    python benchmarks/learning_curve.py --set num_envs=256 --set learning_rate=0.001
    python benchmarks/learning_curve.py --resume                        # after a kill
    python benchmarks/learning_curve.py --overwrite                     # a new run there

Measured numbers depend on the machine and on what else runs on it: report the load.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import sys
import time
import typing
from pathlib import Path

import torch

from coinrun_mg.agents import PPOConfig, TrainingHook, first_episode_stats, train
from coinrun_mg.agents.config import GAMES, PROFILES
from coinrun_mg.agents.ppo import CHECKPOINT_NAME, read_checkpoint
from coinrun_mg.envs.checks import resolve_device

REPO_ROOT = Path(__file__).resolve().parent.parent
EVAL_SEED = 1_000_000
COLUMNS = (
    "steps",
    "train_wall_s",
    "coin_rate",
    "died_rate",
    "timeout_rate",
    "episode_length",
    "train_sps",
    "eval_s",
    "peak_rss_mb",
)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--profile", choices=tuple(PROFILES), default="quick")
    p.add_argument("--game", choices=GAMES, default="coinrun", help="coinrun or maze")
    p.add_argument("--rand-fraction", type=float, default=0.0)
    p.add_argument(
        "--total-steps", type=int, default=None, help="default: the profile's total_steps"
    )
    p.add_argument("--eval-every", type=int, default=250_000, help="steps between evaluations")
    p.add_argument("--eval-envs", type=int, default=256, help="episodes per evaluation")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a PPOConfig field (repeatable), e.g. --set num_envs=256",
    )
    p.add_argument("--out", type=Path, default=None, help="output directory")
    p.add_argument("--resume", action="store_true", help="continue a killed benchmark")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start afresh where a run exists (its folder is moved aside, not deleted)",
    )
    p.add_argument("--no-plot", action="store_true", help="skip the PNG")
    return p.parse_args(argv)


def parse_overrides(items: list[str]) -> dict:
    """``FIELD=VALUE`` strings -> typed PPOConfig overrides."""
    types = typing.get_type_hints(PPOConfig)
    out = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or name not in types:
            raise SystemExit(f"--set {item!r}: expected FIELD=VALUE with FIELD in {list(types)}")
        kind = types[name]
        if kind is bool:
            out[name] = text.lower() in ("1", "true", "yes", "on")
        elif kind in (int, float, str):
            out[name] = kind(text)
        else:  # coin_region: "lo,hi"
            out[name] = tuple(float(v) for v in text.split(","))
    return out


class CoinRateCurve(TrainingHook):
    """Evaluates the training-distribution coin rate and records one CSV row per call."""

    def __init__(self, every_steps: int, config: PPOConfig, eval_envs: int, out: Path, rows):
        self.every_steps = every_steps
        self.config = config
        self.eval_envs = eval_envs
        self.out = out
        self.rows = rows
        self.start = time.time()
        self.eval_total = 0.0
        self.train_before = rows[-1]["train_wall_s"] if rows else 0.0

    def __call__(self, step, policy, writer):
        if self.rows and step <= self.rows[-1]["steps"]:
            return None  # already evaluated before a resume
        t0 = time.time()
        stats = first_episode_stats(
            policy,
            self.config.env_kwargs(),
            self.eval_envs,
            EVAL_SEED,
            policy.device,
            game=self.config.game,
        )
        eval_s = time.time() - t0
        train_wall = self.train_before + (t0 - self.start - self.eval_total)
        self.eval_total += eval_s
        row = {
            "steps": step,
            "train_wall_s": round(train_wall, 2),
            **{k: round(v, 4) for k, v in stats.items()},
            "train_sps": round(step / max(train_wall, 1e-9), 1),
            "eval_s": round(eval_s, 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }
        self.rows.append(row)
        write_csv(self.out / "curve.csv", self.rows)
        print(
            f"step {step:>9}  coin rate {row['coin_rate']:.3f}  length "
            f"{row['episode_length']:.0f}  {row['train_sps']:.0f} steps/s  "
            f"eval {eval_s:.1f}s  rss {row['peak_rss_mb']:.0f} MB",
            flush=True,
        )
        return {f"eval/{k}": v for k, v in stats.items()}


def write_csv(path: Path, rows: list[dict]) -> None:
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def read_csv(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def random_policy_coin_rate(config: PPOConfig, eval_envs: int, device) -> float:
    rng = torch.Generator(device).manual_seed(0)

    def act(obs):
        return torch.randint(0, 15, (obs.shape[0],), generator=rng, device=obs.device)

    stats = first_episode_stats(
        act, config.env_kwargs(), eval_envs, EVAL_SEED, device, game=config.game
    )
    return stats["coin_rate"]


def plot(path: Path, rows: list[dict], chance: float, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r["steps"] for r in rows], [r["coin_rate"] for r in rows], marker="o", label="PPO")
    ax.axhline(chance, color="grey", linestyle="--", label="uniform random policy")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("coin rate (training distribution)")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    args = parse_args(argv)
    overrides = {
        "rand_fraction": args.rand_fraction,
        "seed": args.seed,
        "device": args.device,
        "game": args.game,
        **parse_overrides(args.set),
    }
    if args.total_steps is not None:
        overrides["total_steps"] = args.total_steps
    config = PPOConfig.from_profile(args.profile, **overrides)
    out = args.out or REPO_ROOT / "benchmarks" / "out" / (
        ("maze_" if config.game == "maze" else "")
        + f"learning_curve_f{config.rand_fraction:g}_s{config.seed}"
    )
    out.mkdir(parents=True, exist_ok=True)
    run_dir = out / "run"
    rows = read_csv(out / "curve.csv") if args.resume else []
    if args.resume and (run_dir / CHECKPOINT_NAME).exists():
        resumed_step = read_checkpoint(run_dir)["global_step"]
        rows = [r for r in rows if r["steps"] <= resumed_step]
    for row in rows:
        row["steps"] = int(row["steps"])

    device = resolve_device(config.device)
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)  # before the random-policy baseline too
    chance = random_policy_coin_rate(config, args.eval_envs, device)
    print(
        f"{args.profile} profile, rand_fraction={config.rand_fraction:g}, "
        f"{config.total_steps} steps on {device}; random policy coin rate {chance:.3f}",
        flush=True,
    )
    hook = CoinRateCurve(args.eval_every, config, args.eval_envs, out, rows)
    started = time.time()
    load_before = os.getloadavg()
    result = train(config, run_dir, resume=args.resume, overwrite=args.overwrite, hooks=[hook])
    total_wall = time.time() - started

    summary = {
        "benchmark": "learning_curve",
        "profile": args.profile,
        "config": result.config.to_dict(),
        "eval": {"envs": args.eval_envs, "every_steps": args.eval_every, "seed": EVAL_SEED},
        "random_policy_coin_rate": chance,
        "rows": rows,
        "total_wall_s": round(total_wall, 1),
        "machine": {
            "cpu_count": os.cpu_count(),
            "loadavg_at_start": load_before,
            "loadavg_at_end": os.getloadavg(),
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "device": str(device),
            "cuda_device": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        },
    }
    (out / "curve.json").write_text(json.dumps(summary, indent=2) + "\n")
    if not args.no_plot and rows:
        title = f"{args.profile}, rand_fraction={config.rand_fraction:g}, seed {config.seed}"
        plot(out / "curve.png", rows, chance, title)

    print("\n| steps | train wall s | coin rate | episode length | steps/s | peak RSS MB |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['steps']} | {r['train_wall_s']:.0f} | {r['coin_rate']:.3f} | "
            f"{r['episode_length']:.0f} | {r['train_sps']:.0f} | {r['peak_rss_mb']:.0f} |"
        )
    print(f"\nwrote {out}/curve.csv, curve.json" + ("" if args.no_plot else ", curve.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
