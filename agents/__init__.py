"""PPO agents for CoinRun: config, networks, trainer, checkpoints and policies.

from coinrun_mg.agents import PPOConfig, train, load_policy

config = PPOConfig.from_profile("quick", rand_fraction=0.02, total_steps=1_000_000)
result = train(config, "runs/quick_f0.02_s1")           # resume=True continues a run
policy = load_policy("runs/quick_f0.02_s1/checkpoint.pt", device="cpu")
actions = policy(obs)                                    # uint8 [N, H, W, C] -> int64 [N]

A damaged, foreign or unsafe checkpoint file raises ``CheckpointError`` (a ValueError); a
checkpoint that cannot be written (a full disk) ``CheckpointWriteError`` (an OSError).
"""

from .checkpoint import CheckpointError, CheckpointWriteError, read_run_config
from .config import PROFILES, PPOConfig
from .networks import Agent, CompactCNN, ImpalaCNN
from .ppo import (
    Policy,
    TrainingHook,
    TrainingInterrupted,
    TrainResult,
    compute_gae,
    first_episode_stats,
    load_policy,
    train,
)
from .vec_adapter import VecEnvAdapter

__all__ = [
    "PROFILES",
    "Agent",
    "CheckpointError",
    "CheckpointWriteError",
    "CompactCNN",
    "ImpalaCNN",
    "PPOConfig",
    "Policy",
    "TrainResult",
    "TrainingHook",
    "TrainingInterrupted",
    "VecEnvAdapter",
    "compute_gae",
    "first_episode_stats",
    "load_policy",
    "read_run_config",
    "train",
]
