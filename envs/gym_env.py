"""Gymnasium facades over the torch core: a single ``Env`` and a native ``VectorEnv``.

Both speak numpy, as Gymnasium's contract asks; code that wants tensors on the device
uses ``CoinRunVectorEnv.core`` (a ``CoinRunCore``) directly.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from .config import CoinRunConfig
from .core import INFO_KEYS, CoinRunCore
from .state import NUM_ACTIONS

_DOC_COMMON = """
    ## Description
    CoinRun (procgen's platformer) written in batched torch, with the coin optionally
    moved away from the end of the level.  The agent starts at the left; the coin
    normally sits at the far-right end, on top of the last ground column, with solid wall
    beyond.  Levels have 1-5 sections with height changes, pits (lava, a row of saws or
    walking enemies) with stepping blocks, saws and crate stacks on flat ground, and, in
    hard mode, walking enemies on flat ground.  With ``rand_fraction > 0`` that fraction
    of levels (decided per level seed) has its coin moved ("section": the left edge of a
    random section, the rule of Langosco et al. 2022; "anywhere": any safe standing tile);
    the original end position stays tracked as ``reached_end``.

    ## Action Space
    ``Discrete(15)`` as in procgen: ``a`` in 0..8 is (left, none, right) x (down, none,
    up) with ``vx = a // 3 - 1`` and ``vy = a % 3 - 1``; 9..14 stand still.  Up jumps when
    standing on ground or a crate.

    ## Observation Space
    ``obs_mode="symbolic"``: ``Box(0, 255, (view, view, 10), uint8)``, an agent-centred
    crop of the tile grid, channels: solid, lava, saw, crate, coin, enemy (0 or 255),
    then the agent's vx, vy and sub-tile x, y as shades (127 is zero velocity).
    ``obs_mode="pixels"``: ``Box(0, 255, (64, 64, 3), uint8)``, an agent-centred RGB view
    12.8 tiles across; hard mode varies the colour theme per level.

    ## Rewards
    +10 for touching the coin; 0 otherwise (no step penalty).

    ## Starting State
    The agent stands at x = 1.5 on the floor at the left of the level.

    ## Episode End
    Terminated when the agent touches the coin, lava, a saw or an enemy, or (with
    ``end_terminates=True``) the original end position; truncated after
    ``max_episode_steps`` (1000) steps.

    ## Info
    At reset and every step: ``coin_collected``, ``reached_end`` (touched the original
    end position at some point this episode), ``died``, ``timed_out``,
    ``coin_randomized``, ``level_seed``, ``agent_x``, ``coin_x``, ``end_x``.

    ## Arguments
    ``obs_mode`` ("symbolic" | "pixels"), ``view_size`` (odd, symbolic only, default 13),
    ``distribution_mode`` ("easy" | "hard"), ``num_levels`` (0 = unlimited),
    ``start_level``, ``rand_fraction`` (float in [0, 1]), ``coin_placement``
    ("section" | "anywhere"), ``coin_region`` ((lo, hi) fractions of the level length for
    moved coins), ``end_terminates`` (default False), ``max_episode_steps`` (1000),
    ``device`` ("auto" | "cpu" | "cuda"), ``render_mode`` (None | "rgb_array"),
    ``compile`` ("auto" | True | False: run the step through ``torch.compile``; "auto"
    does on CUDA, where it is several times faster; the first step then compiles).

    ## Version History
    * v0: initial release.
"""


# What every vector env of the family declares (the procgen backend shares it).
VECTOR_METADATA = {
    "render_modes": ["rgb_array"],
    "render_fps": 15,
    "autoreset_mode": AutoresetMode.NEXT_STEP,
}


def _observation_space(core: CoinRunCore) -> spaces.Box:
    return spaces.Box(0, 255, shape=core.observation_shape, dtype=np.uint8)


def _check_render_mode(render_mode: str | None) -> None:
    if render_mode not in (None, "rgb_array"):
        raise ValueError(
            f"render_mode={render_mode!r} is invalid; accepted values are None and 'rgb_array'"
        )


class CoinRunEnv(gym.Env):
    __doc__ = "A single native CoinRun environment (numpy in and out).\n" + _DOC_COMMON

    metadata = {"render_modes": ["rgb_array"], "render_fps": 15}

    def __init__(
        self,
        render_mode: str | None = None,
        device: str = "cpu",
        compile: bool | str = "auto",
        **kwargs: Any,
    ):
        _check_render_mode(render_mode)
        self.config = CoinRunConfig(**kwargs)
        self.core = CoinRunCore(
            1, self.config, device=device, autoreset="disabled", compile=compile
        )
        self.render_mode = render_mode
        self.observation_space = _observation_space(self.core)
        self.action_space = spaces.Discrete(NUM_ACTIONS)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self.core.reset(seed)
        elif self.core.state is None:
            self.core.reset(int(self.np_random.integers(2**31)))
        else:
            self.core.start_next_episodes()  # the next level of this env's sequence
        info = {k: v[0].item() for k, v in self.core._info(None).items()}
        return self.core.observe()[0].cpu().numpy(), info

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"action={action!r} is invalid; expected an int in [0, {NUM_ACTIONS})")
        actions = torch.tensor([int(action)], device=self.core.device)
        obs, reward, terminated, truncated, info = self.core.step(actions)
        return (
            obs[0].cpu().numpy(),
            float(reward[0]),
            bool(terminated[0]),
            bool(truncated[0]),
            {k: v[0].item() for k, v in info.items()},
        )

    def render(self):
        if self.render_mode == "rgb_array" and self.core.state is not None:
            return self.core.render_frame(0)
        return None


class CoinRunVectorEnv(VectorEnv):
    __doc__ = (
        "``num_envs`` native CoinRun environments stepped as one batch (numpy in and out).\n\n"
        "    Autoreset follows Gymnasium's NEXT_STEP convention.  Environment ``i`` of\n"
        "    ``reset(seed=s)`` plays the same levels as a single env reset with ``s + i``.\n"
        "    The torch core is ``self.core``.\n" + _DOC_COMMON
    )

    metadata = VECTOR_METADATA

    def __init__(
        self,
        num_envs: int = 1,
        device: str = "auto",
        render_mode: str | None = None,
        compile: bool | str = "auto",
        **kwargs: Any,
    ):
        _check_render_mode(render_mode)
        self.config = CoinRunConfig(**kwargs)
        self.core = CoinRunCore(
            num_envs, self.config, device=device, autoreset="next_step", compile=compile
        )
        self.num_envs = num_envs
        self.render_mode = render_mode
        self.single_observation_space = _observation_space(self.core)
        self.single_action_space = spaces.Discrete(NUM_ACTIONS)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._np_random = None

    def reset(self, *, seed: int | list[int] | None = None, options: dict | None = None):
        if isinstance(seed, (list, tuple, np.ndarray)):
            keys = [int(k) for k in seed]
            if len(keys) != self.num_envs or min(keys) < 0:
                raise ValueError(
                    f"seed={seed!r} is invalid; a list of seeds needs {self.num_envs} ints >= 0"
                )
            self.core.reset_keys(torch.tensor(keys, device=self.core.device))
            obs = self.core.observe()
            info = self.core._info(None)
        else:
            obs, info = self.core.reset(seed)
        return obs.cpu().numpy(), self._numpy_info(info)

    def step(self, actions):
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs,) or not np.issubdtype(actions.dtype, np.integer):
            raise ValueError(
                f"actions of shape {actions.shape} and dtype {actions.dtype} are invalid; "
                f"expected ({self.num_envs},) integers in [0, {NUM_ACTIONS})"
            )
        obs, reward, terminated, truncated, info = self.core.step(torch.from_numpy(actions))
        return (
            obs.cpu().numpy(),
            reward.cpu().numpy(),
            terminated.cpu().numpy(),
            truncated.cpu().numpy(),
            self._numpy_info(info),
        )

    def _numpy_info(self, info: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        everywhere = np.ones(self.num_envs, dtype=bool)
        for key in INFO_KEYS:
            out[key] = info[key].cpu().numpy()
            out["_" + key] = everywhere
        return out

    def render(self):
        if self.render_mode == "rgb_array" and self.core.state is not None:
            return tuple(self.core.render_frame(i) for i in range(self.num_envs))
        return None
