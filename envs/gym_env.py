"""Gymnasium facades over any batched torch core of the family: a single ``Env`` and a
native ``VectorEnv``.

Both speak numpy, as Gymnasium's contract asks; code that wants tensors on the device
uses the facade's ``core`` directly.  A game subclasses them, naming its config and core
class (``config_class``, ``core_class``) and writing its docstring; the core must offer:

* ``core_class(num_envs, config, device=..., autoreset=..., compile=...)``;
* ``num_actions`` (``Discrete`` actions), ``info_keys`` (what the infos hold),
  ``observation_shape`` (uint8 ``[H, W, C]``), ``device``, ``state`` (None before the
  first reset);
* ``reset(seed) -> (obs, info)``, ``reset_keys(keys)``, ``start_next_episodes()``,
  ``observe()``, ``current_info()`` and ``step(actions) -> (obs, reward, terminated,
  truncated, info)``, all over torch tensors with a leading ``num_envs`` dimension;
* ``render_frame(i)``, a large RGB view of environment ``i`` as numpy.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

# What every vector env of the family declares (the procgen backend shares it).
VECTOR_METADATA = {
    "render_modes": ["rgb_array"],
    "render_fps": 15,
    "autoreset_mode": AutoresetMode.NEXT_STEP,
}


def observation_space(core) -> spaces.Box:
    """The uint8 image space of one environment of ``core``."""
    return spaces.Box(0, 255, shape=core.observation_shape, dtype=np.uint8)


def first_env(obs, reward, terminated, truncated, info) -> tuple:
    """Environment 0 of a batched step (numpy observations), as a single env returns it."""
    return (
        obs[0],
        float(reward[0]),
        bool(terminated[0]),
        bool(truncated[0]),
        {k: v[0].item() for k, v in info.items()},
    )


def checked_actions(actions, num_envs: int, num_actions: int) -> np.ndarray:
    """``actions`` as a numpy array, refusing anything but ``num_envs`` integers (each
    core checks their range)."""
    actions = np.asarray(actions)
    if actions.shape != (num_envs,) or not np.issubdtype(actions.dtype, np.integer):
        raise ValueError(
            f"actions of shape {actions.shape} and dtype {actions.dtype} are invalid; "
            f"expected ({num_envs},) integers in [0, {num_actions})"
        )
    return actions


def with_masks(info: dict[str, np.ndarray], keys, num_envs: int) -> dict[str, np.ndarray]:
    """A vector env's infos: ``info``'s ``keys``, each with Gymnasium's ``_key`` mask
    (every environment reports every key)."""
    everywhere = np.ones(num_envs, dtype=bool)
    out: dict[str, np.ndarray] = {}
    for key in keys:
        out[key] = info[key]
        out["_" + key] = everywhere
    return out


def check_render_mode(render_mode: str | None) -> None:
    if render_mode not in (None, "rgb_array"):
        raise ValueError(
            f"render_mode={render_mode!r} is invalid; accepted values are None and 'rgb_array'"
        )


class CoreEnv(gym.Env):
    """A single environment of a batched torch core (numpy in and out)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 15}
    config_class: ClassVar[type]
    core_class: ClassVar[type]

    def __init__(
        self,
        render_mode: str | None = None,
        device: str = "cpu",
        compile: bool | str = "auto",
        **kwargs: Any,
    ):
        check_render_mode(render_mode)
        self.config = self.config_class(**kwargs)
        self.core = self.core_class(
            1, self.config, device=device, autoreset="disabled", compile=compile
        )
        self.render_mode = render_mode
        self.observation_space = observation_space(self.core)
        self.action_space = spaces.Discrete(self.core.num_actions)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self.core.reset(seed)
        elif self.core.state is None:
            self.core.reset(int(self.np_random.integers(2**31)))
        else:
            self.core.start_next_episodes()  # the next level of this env's sequence
        info = {k: v[0].item() for k, v in self.core.current_info().items()}
        return self.core.observe()[0].cpu().numpy(), info

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(
                f"action={action!r} is invalid; expected an int in [0, {self.core.num_actions})"
            )
        actions = torch.tensor([int(action)], device=self.core.device)
        obs, reward, terminated, truncated, info = self.core.step(actions)
        return first_env(obs.cpu().numpy(), reward, terminated, truncated, info)

    def render(self):
        if self.render_mode == "rgb_array" and self.core.state is not None:
            return self.core.render_frame(0)
        return None


class CoreVectorEnv(VectorEnv):
    """``num_envs`` environments of a batched torch core stepped as one batch (numpy in
    and out), autoresetting by Gymnasium's NEXT_STEP convention."""

    metadata = VECTOR_METADATA
    config_class: ClassVar[type]
    core_class: ClassVar[type]

    def __init__(
        self,
        num_envs: int = 1,
        device: str = "auto",
        render_mode: str | None = None,
        compile: bool | str = "auto",
        **kwargs: Any,
    ):
        check_render_mode(render_mode)
        self.config = self.config_class(**kwargs)
        self.core = self.core_class(
            num_envs, self.config, device=device, autoreset="next_step", compile=compile
        )
        self.num_envs = num_envs
        self.render_mode = render_mode
        self.single_observation_space = observation_space(self.core)
        self.single_action_space = spaces.Discrete(self.core.num_actions)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._np_random = None

    def reset(self, *, seed: int | list[int] | None = None, options: dict | None = None):
        if isinstance(seed, (list, tuple, np.ndarray)):
            keys = [int(k) for k in seed]
            if len(keys) != self.num_envs or min(keys) < 0 or max(keys) >= 2**63:
                raise ValueError(
                    f"seed={seed!r} is invalid; a list of seeds needs {self.num_envs} ints in "
                    "[0, 2**63)"
                )
            self.core.reset_keys(torch.tensor(keys, device=self.core.device))
            obs = self.core.observe()
            info = self.core.current_info()
        else:
            obs, info = self.core.reset(seed)
        return obs.cpu().numpy(), self._numpy_info(info)

    def step(self, actions):
        actions = checked_actions(actions, self.num_envs, self.core.num_actions)
        obs, reward, terminated, truncated, info = self.core.step(torch.from_numpy(actions))
        return (
            obs.cpu().numpy(),
            reward.cpu().numpy(),
            terminated.cpu().numpy(),
            truncated.cpu().numpy(),
            self._numpy_info(info),
        )

    def _numpy_info(self, info: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        as_numpy = {k: info[k].cpu().numpy() for k in self.core.info_keys}
        return with_masks(as_numpy, self.core.info_keys, self.num_envs)

    def render(self):
        if self.render_mode == "rgb_array" and self.core.state is not None:
            return tuple(self.core.render_frame(i) for i in range(self.num_envs))
        return None
