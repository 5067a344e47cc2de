"""Train PPO on CoinRun with 2% of levels having a moved coin, then use the policy.

    python examples/train_ppo.py                 # a few minutes on a CPU
    python examples/train_ppo.py --resume        # continue after Ctrl-C / a kill

The same run from the shell:
    coinrun-mg train --profile quick --rand-fraction 0.02 --total-steps 200000 \\
        --run-dir runs/example
"""

import sys

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


def main() -> None:
    # The CPU profile (symbolic view, easy mode, MLP trunk); any field can be overridden.
    config = PPOConfig.from_profile("quick", rand_fraction=0.02, total_steps=200_000, seed=1)
    result = train(config, "runs/example", resume="--resume" in sys.argv, hooks=[CoinRate()])
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
