"""Make a Gymnasium numpy ``VectorEnv`` look like the native torch core to the trainer.

The PPO trainer is written against :class:`coinrun_mg.envs.coinrun.core.CoinRunCore` with
``autoreset="same_step"``: ``reset(seed)`` and ``step(actions)`` speak tensors on the
training device, and every step is a real transition.  Gymnasium vector envs speak numpy,
and most (the native ``CoinRunVectorEnv``, the procgen backend) use the NEXT_STEP
autoreset: the step that ends an episode returns its last observation, and the *next*
``step`` call ignores its action and only starts the new episode (reward 0, not done).

:class:`VecEnvAdapter` converts numpy <-> tensors and marks those reset steps in
``info["reset_step"]`` (bool ``[N]``): the trainer keeps them out of the loss and out of
episode lengths.  Everything else needs no special care: the step before a reset step
is ``done``, so GAE does not bootstrap across it, and the reset step's own advantage is
never used by an earlier step.  SAME_STEP vector envs pass through with
``reset_step`` always False.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv


class VecEnvAdapter:
    """A NEXT_STEP (or SAME_STEP) numpy ``VectorEnv`` behind the core's tensor API.

    Attributes mirror ``CoinRunCore``: ``num_envs``, ``device``, ``observation_shape``,
    plus ``num_actions``.  ``step`` returns ``obs, reward, terminated, truncated, info``
    as tensors on ``device`` (obs uint8 ``[N, H, W, C]``, reward float32, flags bool,
    info: every per-env numeric entry of the env's info dict, plus ``reset_step``).
    """

    def __init__(self, env: VectorEnv, device: str | torch.device = "cpu"):
        mode = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        mode = AutoresetMode(mode) if isinstance(mode, str) else mode
        if mode not in (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP):
            raise ValueError(
                f"autoreset_mode={mode!r} of {env!r} is not supported; the PPO trainer needs "
                "AutoresetMode.NEXT_STEP or AutoresetMode.SAME_STEP"
            )
        n_actions = getattr(env.single_action_space, "n", None)
        if n_actions is None:
            raise ValueError(
                f"single_action_space={env.single_action_space!r} is not supported; "
                "the PPO agent needs a Discrete action space"
            )
        self.env = env
        self.num_envs = env.num_envs
        self.device = torch.device(device)
        self.next_step = mode == AutoresetMode.NEXT_STEP
        self.observation_shape = tuple(env.single_observation_space.shape)
        self.num_actions = int(n_actions)
        # Environments whose next step() call only starts their next episode.
        self._resetting = np.zeros(self.num_envs, dtype=bool)

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        obs, info = self.env.reset(seed=seed, options=options)
        self._resetting[:] = False
        return self._tensor(obs), self._info(info, self._resetting)

    def step(self, actions: torch.Tensor):
        obs, reward, terminated, truncated, info = self.env.step(actions.cpu().numpy())
        reset_step = self._resetting.copy()
        if self.next_step:
            self._resetting = np.logical_or(terminated, truncated)
        return (
            self._tensor(obs),
            self._tensor(reward, torch.float32),
            self._tensor(terminated, torch.bool),
            self._tensor(truncated, torch.bool),
            self._info(info, reset_step),
        )

    def close(self) -> None:
        self.env.close()

    def _tensor(self, array: Any, dtype: torch.dtype | None = None) -> torch.Tensor:
        return torch.as_tensor(np.asarray(array), dtype=dtype, device=self.device)

    def _info(self, info: dict[str, Any], reset_step: np.ndarray) -> dict[str, torch.Tensor]:
        """Per-env numeric info entries as tensors (entries missing for an env read 0)."""
        out: dict[str, torch.Tensor] = {}
        for key, value in info.items():
            if key.startswith("_") or not isinstance(value, np.ndarray):
                continue
            if value.shape[:1] != (self.num_envs,) or value.dtype.kind not in "biuf":
                continue  # nested dicts (final_info), objects, strings: not needed here
            mask = info.get("_" + key)
            if mask is not None:
                value = np.where(np.reshape(mask, (-1,) + (1,) * (value.ndim - 1)), value, 0)
            out[key] = self._tensor(value)
        out["reset_step"] = self._tensor(reset_step, torch.bool)
        return out
