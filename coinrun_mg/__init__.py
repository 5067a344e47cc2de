"""coinrun-mg: CoinRun environments for goal-misgeneralization research.

Importing this package registers the Gymnasium id ``coinrun_mg/CoinRun-v0``. Only the
entry-point strings are stored, so the environment modules are imported the first
time ``gymnasium.make`` / ``gymnasium.make_vec`` asks for them, not here.
"""

from __future__ import annotations

import gymnasium

__version__ = "0.1.0"

__all__ = ["COINRUN_ENV_ID", "__version__"]

COINRUN_ENV_ID = "coinrun_mg/CoinRun-v0"


def _register_envs() -> None:
    # Re-importing (e.g. importlib.reload) must not trip Gymnasium's
    # "overriding environment" warning.
    if COINRUN_ENV_ID in gymnasium.registry:
        return
    gymnasium.register(
        id=COINRUN_ENV_ID,
        entry_point="coinrun_mg.envs.gym_env:CoinRunEnv",
        vector_entry_point="coinrun_mg.envs.gym_env:CoinRunVectorEnv",
        max_episode_steps=None,
    )


_register_envs()
