"""Train PPO on CoinRun with 2% of levels having a moved coin, then use the policy.

    python examples/train_ppo.py                 # a few minutes on a CPU
    python examples/train_ppo.py --resume        # continue after Ctrl-C / a kill
    python examples/train_ppo.py --overwrite     # a new run; the old one is moved aside
    python examples/train_ppo.py --help          # the options

The same run from the shell:
    coinrun-mg train --profile quick --rand-fraction 0.02 --total-steps 200000 \\
        --run-dir runs/example
"""

import argparse
from collections.abc import Sequence

from coinrun_mg.agents import PPOConfig, TrainingHook, first_episode_stats, load_policy, train
from coinrun_mg.envs.coinrun.config import CoinRunConfig
from coinrun_mg.envs.coinrun.core import CoinRunCore


class CoinRate(TrainingHook):
    """Every 100k steps: the coin rate of the current policy on 128 fresh levels."""

    every_steps = 100_000

    def __call__(self, step, policy, writer):
        stats = first_episode_stats(policy, policy.env_kwargs, num_envs=128, device=policy.device)
        print(f"step {step}: coin rate {stats['coin_rate']:.2f}")
        return {"eval/coin_rate": stats["coin_rate"]}  # logged to TensorBoard


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--total-steps", type=int, default=200_000, help="environment steps")
    parser.add_argument("--rand-fraction", type=float, default=0.02, help="moved-coin levels")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--run-dir", default="runs/example", help="logs and checkpoints")
    reuse = parser.add_mutually_exclusive_group()
    reuse.add_argument("--resume", action="store_true", help="continue the run in --run-dir")
    reuse.add_argument(
        "--overwrite", action="store_true", help="move a run in --run-dir aside, start anew"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    # The CPU profile (symbolic view, easy mode, MLP trunk); any field can be overridden.
    config = PPOConfig.from_profile(
        "quick", rand_fraction=args.rand_fraction, total_steps=args.total_steps, seed=args.seed
    )
    result = train(
        config, args.run_dir, resume=args.resume, overwrite=args.overwrite, hooks=[CoinRate()]
    )
    print(f"trained {result.global_step} steps; checkpoint: {result.checkpoint}")

    # A checkpoint becomes a function from observations to actions.
    policy = load_policy(result.checkpoint, device="cpu")
    env = CoinRunCore(8, CoinRunConfig(**policy.env_kwargs), device="cpu")
    obs, _ = env.reset(seed=123)
    coins = 0
    for _ in range(500):
        obs, reward, terminated, truncated, info = env.step(policy(obs))
        coins += int(info["coin_collected"].sum())
    print(f"8 envs x 500 steps: {coins} coins")


if __name__ == "__main__":
    main()
