"""coinrun-mg: CoinRun environments for goal-misgeneralization research.

Importing this package registers the Gymnasium ids ``coinrun_mg/CoinRun-v0`` (the native
torch environment), ``coinrun_mg/ProcgenCoinRun-v0`` (stock procgen CoinRun, needs
``pip install "coinrun-mg[procgen]"``), ``coinrun_mg/Maze-v0`` (the native torch
Maze, the cheese in the top-right corner) and ``coinrun_mg/ProcgenMaze-v0`` (stock procgen
Maze with the cheese placed the same way). Only the entry-point strings are stored, so the
environment modules (and procgen) are imported the first time ``gymnasium.make`` /
``gymnasium.make_vec`` asks for them, not here.

The public API is loaded on first use, so ``import coinrun_mg`` does not import torch::

    from coinrun_mg import PPOConfig, evaluate, load_policy, run_sweep, train
"""

from __future__ import annotations

import gymnasium

__version__ = "0.1.0"

__all__ = [
    "COINRUN_ENV_ID",
    "MAZE_ENV_ID",
    "PROCGEN_COINRUN_ENV_ID",
    "PROCGEN_MAZE_ENV_ID",
    "PPOConfig",
    "__version__",
    "evaluate",
    "load_policy",
    "run_sweep",
    "train",
]

COINRUN_ENV_ID = "coinrun_mg/CoinRun-v0"
PROCGEN_COINRUN_ENV_ID = "coinrun_mg/ProcgenCoinRun-v0"
MAZE_ENV_ID = "coinrun_mg/Maze-v0"
PROCGEN_MAZE_ENV_ID = "coinrun_mg/ProcgenMaze-v0"


def _register_envs() -> None:
    specs = (
        (
            COINRUN_ENV_ID,
            "coinrun_mg.envs.coinrun.gym_env:CoinRunEnv",
            "coinrun_mg.envs.coinrun.gym_env:CoinRunVectorEnv",
        ),
        (
            PROCGEN_COINRUN_ENV_ID,
            "coinrun_mg.envs.coinrun.procgen_env:ProcgenCoinRunEnv",
            "coinrun_mg.envs.coinrun.procgen_env:ProcgenCoinRunVectorEnv",
        ),
        (
            MAZE_ENV_ID,
            "coinrun_mg.envs.maze.gym_env:MazeEnv",
            "coinrun_mg.envs.maze.gym_env:MazeVectorEnv",
        ),
        (
            PROCGEN_MAZE_ENV_ID,
            "coinrun_mg.envs.maze.procgen_env:ProcgenMazeEnv",
            "coinrun_mg.envs.maze.procgen_env:ProcgenMazeVectorEnv",
        ),
    )
    for env_id, entry_point, vector_entry_point in specs:
        # Re-importing (e.g. importlib.reload) must not trip Gymnasium's
        # "overriding environment" warning.
        if env_id in gymnasium.registry:
            continue
        gymnasium.register(
            id=env_id,
            entry_point=entry_point,
            vector_entry_point=vector_entry_point,
            max_episode_steps=None,
        )


_register_envs()

# Public names and the modules that define them, imported on first access (PEP 562).
_LAZY = {
    "evaluate": "coinrun_mg.eval",
    "train": "coinrun_mg.agents",
    "PPOConfig": "coinrun_mg.agents",
    "load_policy": "coinrun_mg.agents",
    "run_sweep": "coinrun_mg.sweep",
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'coinrun_mg' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
