"""What the family's native cores (``CoinRunCore``, ``MazeCore``) share: their common
arguments, seeding, starts on levels a curriculum chose, the step's autoreset
bookkeeping, action checks and infos.

A game's core subclasses :class:`NativeCore` and supplies what is its own:
``config_class``, ``num_actions``, ``info_keys``, ``_start_states`` (fresh episode states
for level seeds), ``_restart_zeroed`` (the step events a NEXT_STEP restart zeroes), the
``state`` property, ``reset_keys``, ``_levels_changed``, ``_start_next_episode``,
``_step_events``, ``observe`` and ``_info``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from .checks import AUTORESET_MODES, int_at_least, one_of, resolve_device
from .compile import resolve_compile


def as_index(idx, device: torch.device | str) -> torch.Tensor:
    """Environment indices (a sequence, an integer tensor or a bool mask) as int64 on
    ``device``, the form ``index_select`` and ``index_copy_`` take."""
    idx = torch.as_tensor(idx, device=device)
    return idx.nonzero().squeeze(1) if idx.dtype == torch.bool else idx.long()


class NativeCore:
    """The part of a native core that does not depend on the game (see this module)."""

    config_class: ClassVar[type]
    num_actions: ClassVar[int]
    info_keys: ClassVar[tuple[str, ...]]  # what the infos of reset and step hold
    _start_states: ClassVar[Any]  # (level_seeds, config) -> fresh episode states
    _restart_zeroed: ClassVar[tuple[str, ...]]  # events a NEXT_STEP restart zeroes
    # What the error for actions of a wrong dtype asks for (CoinRun's leaves out the shape).
    _wanted_dtype: ClassVar[str] = "({num_envs},) integers in [0, {num_actions})"

    def __init__(
        self,
        num_envs: int,
        config,
        device: str | torch.device,
        autoreset: str,
        check_actions: bool,
        prefetch: int | None,
        compile: bool | str,
    ):
        int_at_least("num_envs", num_envs, 1)
        one_of("autoreset", autoreset, AUTORESET_MODES)
        self.num_envs = num_envs
        self.config = config if config is not None else self.config_class()
        self.device = resolve_device(device)
        self.compiled = resolve_compile(compile, self.device)
        self.autoreset = autoreset
        self.check_actions = check_actions
        # A batch of levels costs a fixed number of small tensor ops whatever its size, so
        # fewer, larger batches are cheaper (docs/design-notes-envs.md, "Level bank").
        self.prefetch = max(1, num_envs // 4) if prefetch is None else prefetch
        self._pending_reset = torch.zeros(num_envs, dtype=torch.bool, device=self.device)

    # -- episode starts ----------------------------------------------------------------
    def reset(self, seed: int | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Start every environment afresh; environment ``i`` gets the seed key ``seed + i``."""
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1, dtype=np.uint32)[0])
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed={seed!r} is invalid; it must be an int >= 0 or None")
        if int(seed) + self.num_envs > 2**63:  # the keys seed .. seed + N - 1 are int64
            raise ValueError(
                f"seed={seed!r} is invalid; seed + num_envs must not pass 2**63 (int64 seed keys)"
            )
        keys = int(seed) + torch.arange(self.num_envs, device=self.device)
        self.reset_keys(keys)
        return self.observe(), self._info(None)

    def start_levels(self, level_seeds: torch.Tensor, index: torch.Tensor) -> None:
        """Start a new episode on the given level seeds in environments ``index`` (a level
        curriculum's choice, e.g. a replayed level).  Each environment keeps its key and
        episode number, so its own sequence of levels goes on unchanged afterwards."""
        index = as_index(index, self.device)
        fresh = self._start_states(level_seeds.to(self.device, torch.int64), self.config)
        fresh.env_key = self.state.env_key.index_select(0, index)
        fresh.episode = self.state.episode.index_select(0, index)
        self.state.assign(index, fresh)
        self._levels_changed(index)
        self._pending_reset[index] = False

    def start_next_episodes(self, done: torch.Tensor | None = None) -> None:
        """Move environments on to the next level of their sequence (no new seed).

        ``done`` (bool ``[N]``) picks the environments, all of them when None; with
        ``autoreset="disabled"`` this is how a caller restarts ended episodes itself
        (the SB3 adapter does, to return each terminal observation before the reset).
        """
        if done is None:
            done = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        self._pending_reset = self._pending_reset & ~done  # not in place: may be shared
        self._start_next_episode(done)

    # -- stepping ------------------------------------------------------------------------
    def step(self, actions: torch.Tensor):
        """Step all environments; returns ``obs, reward, terminated, truncated, info``."""
        if self.state is None:
            raise RuntimeError("step() was called before reset(); call reset(seed=...) first")
        actions = self._validate_actions(actions)
        if self.autoreset == "disabled" and bool(self._pending_reset.any()):
            raise RuntimeError(
                "step() was called on an environment whose episode has ended; call reset() first"
            )
        restarting = self._pending_reset if self.autoreset == "next_step" else None

        events = self._step_events(actions)
        if restarting is not None:
            # Gymnasium's NEXT_STEP: this call only starts the new episode.
            for name in self._restart_zeroed:
                value = getattr(events, name)
                setattr(events, name, torch.where(restarting, torch.zeros_like(value), value))
        done = events.terminated | events.truncated
        info = self._info(events)

        if self.autoreset == "same_step":
            self._start_next_episode(done)
        elif self.autoreset == "next_step":
            self._start_next_episode(restarting)
            self._pending_reset = done
            if bool(restarting.any()):
                info = self._merge_restart_info(info, restarting)
        else:
            self._pending_reset = done
        return self.observe(), events.reward, events.terminated, events.truncated, info

    def _validate_actions(self, actions) -> torch.Tensor:
        if not isinstance(actions, torch.Tensor):
            actions = torch.as_tensor(np.asarray(actions), device=self.device)
        expected = f"expected ({self.num_envs},) integers in [0, {self.num_actions})"
        if actions.shape != (self.num_envs,):
            raise ValueError(f"actions have shape {tuple(actions.shape)}; {expected}")
        if actions.dtype.is_floating_point or actions.dtype == torch.bool:
            wanted = self._wanted_dtype.format(num_envs=self.num_envs, num_actions=self.num_actions)
            raise ValueError(f"actions have dtype {actions.dtype}; expected {wanted}")
        actions = actions.to(device=self.device, dtype=torch.int64)
        if self.check_actions:  # unchecked, a step spends no tensor op on it
            bad = (actions < 0) | (actions >= self.num_actions)
            if bool(bad.any()):
                raise ValueError(
                    f"action {actions[bad][0].item()} is out of range; actions must be "
                    f"integers in [0, {self.num_actions})"
                )
        return actions

    # -- infos ---------------------------------------------------------------------------
    def current_info(self) -> dict[str, torch.Tensor]:
        """The infos of the current episodes as they stand, with no step's events (what
        ``reset`` returns)."""
        return self._info(None)

    def _merge_restart_info(self, info, restarting) -> dict[str, torch.Tensor]:
        """Infos of restarted environments describe their new episode's first state."""
        fresh = self._info(None)
        return {k: torch.where(restarting, fresh[k], v) for k, v in info.items()}
