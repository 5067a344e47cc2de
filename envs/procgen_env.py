"""What the family's stock-procgen backends share: a batched core over procgen's
``ProcgenGym3Env`` and its Gymnasium facades.

Each game's backend (``envs/coinrun/procgen_env.py``, ``envs/maze/procgen_env.py``)
edits every episode as it starts, through procgen's ``get_state`` / ``set_state``.
:class:`ProcgenCore` holds the plumbing that does not depend on the game: creating
procgen's env and a reusable state buffer, starting episodes (``start``,
``start_levels``, ``restart_all``, ``start_pending_episodes``), Gymnasium's NEXT_STEP
autoreset on top of procgen's same-step reset (the next episode's state is captured when
procgen ends an episode and loaded back on the next step), forced ends (procgen's
``cur_time`` set one step short of its ``timeout``) and action checks.  A game's core
subclasses it with what is its own:

* ``_prepare(raw)``: edit a fresh episode's state; returns the new bytes (None if
  unchanged) and the level's facts;
* ``_install(i, facts)``: make those facts environment ``i``'s episode;
* ``_advance(actions)``: step every environment (built on :meth:`ProcgenCore._act` and
  :meth:`ProcgenCore._capture_next_episodes`), returning ``obs, reward, terminated,
  truncated, info``;
* ``_info(...)``: the infos;
* where its observations are not procgen's frames: ``_started_obs``,
  ``_restarted_obs`` and ``_output``.

:class:`ProcgenEnv` and :class:`ProcgenVectorEnv` are the Gymnasium facades; a game
subclasses them with its argument list, config and docstring.

procgen is imported only when a core is created; installing it: :data:`INSTALL_COMMAND`.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import VectorEnv
from gymnasium.vector.utils import batch_space

from .checks import int_at_least
from .gym_env import (
    VECTOR_METADATA,
    checked_actions,
    first_env,
    observation_space,
    with_masks,
)

INSTALL_COMMAND = 'pip install "coinrun-mg[procgen]"'
OBSERVATION_SHAPE = (64, 64, 3)  # procgen's frames
NUM_ACTIONS = 15  # procgen's action set
NOOP_ACTION = 4  # (none, none): used for the ignored step of a forced reset
STATE_BUFFER_BYTES = 1 << 20  # procgen's own MAX_STATE_SIZE


def import_procgen(env_id: str):
    """``procgen``, imported quietly (its old ``gym`` dependency prints a banner); the
    error when it is missing names ``env_id`` and the install command."""
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            import procgen
    except ImportError as exc:
        raise ImportError(
            f"{env_id} needs stock procgen, which is not installed "
            f"({exc}). Install it with: {INSTALL_COMMAND}"
        ) from exc
    return procgen


def level_range(st) -> tuple[int, int]:
    """procgen's level-seed range of a state: ``[low, high)``, drawn from at every reset."""
    return int(st.options["level_seed_low"]), int(st.options["level_seed_high"])


def check_device(device) -> None:
    """procgen runs on the CPU: refuse any other device."""
    if device not in (None, "cpu"):
        raise ValueError(
            f"device={device!r} is invalid for the procgen backend: procgen runs on the CPU "
            "and returns numpy arrays; leave it out or pass 'cpu'"
        )


# --------------------------------------------------------------------------------------
# The batched core over ProcgenGym3Env
# --------------------------------------------------------------------------------------


class ProcgenCore:
    """``num_envs`` procgen environments of one game, each episode edited as it starts.

    ``start(seed)`` creates procgen's env; ``step(actions)`` follows Gymnasium's NEXT_STEP
    convention (``autoreset="next_step"``) or refuses to step a finished environment
    (``autoreset="disabled"``).  Numpy in and out.  A game's subclass names procgen's
    game (``env_name``), its Gymnasium id (``env_id``), its state codec (``state_class``)
    and infos (``info_keys``), and writes the hooks listed in this module's docstring.
    """

    env_name: ClassVar[str]  # procgen's name of the game
    env_id: ClassVar[str]  # named in the error when procgen is missing
    state_class: ClassVar[type]  # the game's state codec (``parse``, ``serialize``)
    info_keys: ClassVar[tuple[str, ...]]  # what the infos of start and step hold

    def __init__(
        self,
        num_envs: int,
        config,
        *,
        autoreset: str = "next_step",
        render_mode: str | None = None,
    ):
        int_at_least("num_envs", num_envs, 1)
        self._procgen = import_procgen(self.env_id)
        self.num_envs = num_envs
        self.config = config
        self.autoreset = autoreset
        self.render_mode = render_mode
        self.env = None  # procgen.ProcgenGym3Env once started
        n = num_envs
        self.steps = np.zeros(n, dtype=np.int64)
        self.level_seed = np.zeros(n, dtype=np.int64)
        self.moved = np.zeros(n, dtype=bool)
        self.reached = np.zeros(n, dtype=bool)
        self.pending = np.zeros(n, dtype=bool)  # episode over: the next step restarts it
        self.forced = np.zeros(n, dtype=bool)  # ... by a forced procgen timeout
        self._restore: list[bytes | None] = [None] * n  # next episode's state to load
        self._upcoming: list[Any] = [None] * n  # and its level facts
        self._last_obs: np.ndarray | None = None
        self._level_range: tuple[int, int] | None = None  # procgen's, as configured
        self.state_reads = 0  # get_state calls (for benchmarks)
        self.state_writes = 0

    # -- procgen access -------------------------------------------------------------------
    def _read_into_buffer(self, i: int):
        """Environment ``i``'s state, read into the reusable buffer (not copied out)."""
        n = self.env.call_c_func("get_state", i, self._buf, STATE_BUFFER_BYTES)
        self.state_reads += 1
        self._buf_len = n
        return self.env._ffi.buffer(self._buf, n)

    def _buffered_state(self) -> bytes:
        """The state last read into the buffer, copied out."""
        return bytes(self.env._ffi.buffer(self._buf, self._buf_len))

    def _get_state(self, i: int) -> bytes:
        return bytes(self._read_into_buffer(i))

    def _set_state(self, i: int, data: bytes) -> None:
        self.env.call_c_func("set_state", i, data, len(data))
        self.state_writes += 1

    def _observe(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rew, obs, first = self.env.observe()
        return rew.astype(np.float32), obs["rgb"], first

    # -- episode starts -------------------------------------------------------------------
    def _set_episode_options(self, st) -> bool:
        """Write the configured timeout and level range into a fresh episode's state;
        whether that changed it."""
        edited = False
        if int(st.game["timeout"]) != self.config.max_episode_steps:
            st.game["timeout"] = self.config.max_episode_steps
            edited = True
        if self._level_range is not None and self._level_range != level_range(st):
            # A level chosen by start_levels lasts one episode: draw from the range again.
            st.options["level_seed_low"], st.options["level_seed_high"] = self._level_range
            edited = True
        return edited

    def _begin(self, i: int, data: bytes | None, facts) -> bool:
        """Make ``facts`` environment ``i``'s episode, loading its edited state ``data``
        first (None: procgen's state stands); whether a state was loaded."""
        if data is not None:
            self._set_state(i, data)
        self._install(i, facts)
        return data is not None

    def start(self, seed: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(Re)create procgen's env with ``rand_seed=seed`` and start every episode."""
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ValueError(f"seed={seed!r} is invalid; it must be an int in [0, 2**31)")
        if not 0 <= seed < 2**31:
            raise ValueError(
                f"seed={seed!r} is invalid; procgen's rand_seed must be an int in [0, 2**31)"
            )
        if self.env is not None:
            self.env.close()
        cfg = self.config
        self.env = self._procgen.ProcgenGym3Env(
            num=self.num_envs,
            env_name=self.env_name,
            distribution_mode=cfg.distribution_mode,
            num_levels=cfg.num_levels,
            start_level=cfg.start_level,
            rand_seed=int(seed),
            render_mode=self.render_mode,
        )
        # One reusable buffer for get_state (procgen's own wrapper allocates 1 MiB a call).
        self._buf = self.env._ffi.new("char[]", STATE_BUFFER_BYTES)
        self._buf_len = 0
        self._level_range = None
        self._level_range = level_range(self.state_class.parse(self._get_state(0)))
        for i in range(self.num_envs):
            self._begin(i, *self._prepare(self._get_state(i)))
        self.pending[:] = False
        self.forced[:] = False
        self._restore = [None] * self.num_envs
        self._upcoming = [None] * self.num_envs
        _, obs, _ = self._observe()
        self._last_obs = self._started_obs(obs)
        return self._output(self._last_obs), self._info()

    def _force_end(self, i: int, raw: bytes) -> None:
        """Make procgen end environment ``i``'s episode (a timeout) on its next step;
        ``raw`` is its current state."""
        st = self.state_class.parse(raw)
        st.game["cur_time"] = int(st.game["timeout"]) - 1
        self._set_state(i, st.serialize())
        self.pending[i] = True
        self.forced[i] = True

    def start_levels(self, level_seeds) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Start every environment's next episode on the given procgen level seed (one
        int in ``[0, 2**31)`` per environment); the episodes after it draw from the
        configured levels again.

        Each environment's level-seed range is narrowed to that one seed and its episode
        ended (a forced timeout, as in ``restart_all``): procgen draws the next level from
        the range, so the level is the one a fresh procgen env would make of that seed,
        whatever the environment played before.  Needs a started env (``start``).
        """
        if self.env is None:
            raise RuntimeError("start_levels() was called before start(); call start(seed) first")
        seeds = np.asarray(level_seeds)
        if (
            seeds.shape != (self.num_envs,)
            or not np.issubdtype(seeds.dtype, np.integer)
            or ((seeds < 0) | (seeds >= 2**31)).any()
        ):
            raise ValueError(
                f"level_seeds={level_seeds!r} is invalid; it must be {self.num_envs} ints "
                "in [0, 2**31), one per environment"
            )
        for i, level in enumerate(seeds.tolist()):
            st = self.state_class.parse(self._get_state(i))
            # procgen draws low + bits % (high - low), in 32-bit unsigned arithmetic: for
            # the largest seed, high wraps to -2**31 and the range is still one seed wide.
            high = level + 1 if level < 2**31 - 1 else -(2**31)
            st.options["level_seed_low"], st.options["level_seed_high"] = level, high
            st.game["cur_time"] = int(st.game["timeout"]) - 1
            self._set_state(i, st.serialize())
        self.pending[:] = True
        self.forced[:] = True  # every state is read afresh after the step below
        self._restore = [None] * self.num_envs
        self._upcoming = [None] * self.num_envs
        obs, _, _, _, info = self._advance(np.full(self.num_envs, NOOP_ACTION, dtype=np.int32))
        return obs, info

    def restart_all(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Move every environment on to the next level of its own sequence."""
        for i in range(self.num_envs):
            if not self.pending[i]:  # mid-episode (or never stepped): end it now
                self._force_end(i, self._get_state(i))
        obs, _, _, _, info = self._advance(np.full(self.num_envs, NOOP_ACTION, dtype=np.int32))
        return obs, info

    def start_pending_episodes(self) -> tuple[np.ndarray, np.ndarray]:
        """Start now the next episode of environments whose episode procgen ended on the
        last step, instead of on the next ``step`` call (a same-step autoreset, as
        Stable-Baselines3 expects).

        Returns ``(obs, restarted)``: every environment's current observation (the first
        one of the new episode where restarted) and the bool mask of the restarted
        environments.  Episodes ended early (CoinRun's ``end_terminates``, Maze's
        ``corner_terminates``) stay pending: procgen only draws their next level on its
        next step.
        """
        restarted = self.pending & ~self.forced
        for i in np.flatnonzero(restarted).tolist():
            # procgen has already drawn the next level; load the captured (edited) start.
            self._begin(i, self._restore[i], self._upcoming[i])
            self._restore[i] = self._upcoming[i] = None
        if not restarted.any():
            return self._output(self._last_obs), restarted
        self.pending &= ~restarted
        self._last_obs = self._restarted_obs(restarted)
        return self._output(self._last_obs), restarted

    # -- stepping -------------------------------------------------------------------------
    def step(self, actions) -> tuple[np.ndarray, ...]:
        """Step every environment; returns ``obs, reward, terminated, truncated, info``."""
        if self.env is None:
            raise RuntimeError("step() was called before reset(); call reset(seed=...) first")
        if self.autoreset == "disabled" and self.pending.any():
            raise RuntimeError(
                "step() was called on an environment whose episode has ended; call reset() first"
            )
        return self._advance(self._validate_actions(actions))

    def _validate_actions(self, actions) -> np.ndarray:
        a = checked_actions(actions, self.num_envs, NUM_ACTIONS)
        if ((a < 0) | (a >= NUM_ACTIONS)).any():
            bad = a[(a < 0) | (a >= NUM_ACTIONS)][0]
            raise ValueError(
                f"action {bad} is out of range; actions must be integers in [0, {NUM_ACTIONS})"
            )
        return a.astype(np.int32)

    def _act(self, actions: np.ndarray) -> tuple[np.ndarray, ...]:
        """Step procgen and start the episodes that ended on the previous step.

        Returns ``restarting`` (bool: the environments whose step only started their new
        episode, reward 0), ``reward``, ``obs`` (procgen's frames) and ``first``
        (procgen's own episode starts on this step).
        """
        restarting = self.pending.copy()
        self.env.act(actions)
        reward, obs, first = self._observe()
        reloaded = False
        for i in np.flatnonzero(restarting).tolist():
            if self.forced[i]:
                if not first[i]:
                    raise RuntimeError(
                        f"procgen did not reset environment {i} after its forced timeout; "
                        "this procgen build behaves differently from procgen 0.10.7"
                    )
                data, facts = self._prepare(self._get_state(i))
            else:  # loading the captured state also undoes the step just taken there
                data, facts = self._restore[i], self._upcoming[i]
            reloaded = self._begin(i, data, facts) or reloaded
            self._restore[i] = self._upcoming[i] = None
        if reloaded:
            _, obs, _ = self._observe()
        reward[restarting] = 0.0
        self.pending[:] = False
        self.forced[:] = False
        return restarting, reward, obs, first

    def _capture_next_episodes(self, ended: np.ndarray, obs: np.ndarray) -> None:
        """Episodes procgen ended on this step: it has already drawn their next level,
        whose (edited) state is kept to load on the next step; ``obs`` keeps showing
        the ending episode's last frame."""
        for i in np.flatnonzero(ended).tolist():
            obs[i] = self._last_obs[i]  # procgen already shows the next level
            raw = self._get_state(i)
            data, facts = self._prepare(raw)
            self._restore[i] = raw if data is None else data
            self._upcoming[i] = facts
            self.pending[i] = True

    # -- observations: procgen's frames unless a game draws its own -------------------------
    def _started_obs(self, frames: np.ndarray) -> np.ndarray:
        """What ``start`` keeps as every environment's first observation."""
        return frames

    def _restarted_obs(self, restarted: np.ndarray) -> np.ndarray:
        """What ``start_pending_episodes`` keeps as the observations, the environments in
        ``restarted`` showing their new episode."""
        _, frames, _ = self._observe()
        return frames

    def _output(self, obs: np.ndarray) -> np.ndarray:
        """The observation handed out for a kept one."""
        return obs

    def render_frames(self) -> list[np.ndarray]:
        """procgen's large RGB frames (``render_mode="rgb_array"``)."""
        return [info["rgb"] for info in self.env.get_info()]

    def close(self) -> None:
        if self.env is not None:
            self.env.close()
            self.env = None


# --------------------------------------------------------------------------------------
# Gymnasium facades
# --------------------------------------------------------------------------------------


class ProcgenEnv(gym.Env):
    """A single environment of a procgen core (numpy in and out).  A game's subclass
    checks its arguments, builds its config and passes it on with its core's options;
    ``core_class`` names the core."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 15}
    core_class: ClassVar[type]

    def __init__(self, config, render_mode: str | None, **core_options: Any):
        self.config = config
        self.core = self.core_class(
            1, config, autoreset="disabled", render_mode=render_mode, **core_options
        )
        self.render_mode = render_mode
        self.observation_space = observation_space(self.core)
        self.action_space = spaces.Discrete(NUM_ACTIONS)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            obs, info = self.core.start(seed)
        elif self.core.env is None:
            obs, info = self.core.start(int(self.np_random.integers(2**31)))
        else:
            obs, info = self.core.restart_all()
        return obs[0], {k: v[0].item() for k, v in info.items()}

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"action={action!r} is invalid; expected an int in [0, {NUM_ACTIONS})")
        return first_env(*self.core.step(np.array([int(action)])))

    def render(self):
        if self.render_mode == "rgb_array" and self.core.env is not None:
            return self.core.render_frames()[0]
        return None

    def close(self):
        self.core.close()


# What a game's vector env docstring says of the reset that ProcgenVectorEnv implements.
VECTOR_RESET_DOC = (
    "    Autoreset follows Gymnasium's NEXT_STEP convention.  ``reset(seed=s)``\n"
    "    recreates procgen's env with ``rand_seed=s`` (procgen derives each env's\n"
    "    level sequence from it, so the levels depend on ``num_envs``); ``reset()``\n"
    "    moves every env on to its next level; ``reset(options={'level_seeds': seeds})``\n"
    "    starts env ``i`` on procgen level ``seeds[i]`` (its later episodes draw from\n"
    "    the configured levels again).  The core is ``self.core``.\n"
)


class ProcgenVectorEnv(VectorEnv):
    """``num_envs`` environments of a procgen core in one ``ProcgenGym3Env`` (numpy in
    and out), autoresetting by Gymnasium's NEXT_STEP convention.  A game's subclass
    checks its arguments, builds its config and passes it on with its core's options;
    ``core_class`` names the core."""

    metadata = VECTOR_METADATA
    core_class: ClassVar[type]

    def __init__(self, num_envs: int, config, render_mode: str | None, **core_options: Any):
        self.config = config
        self.core = self.core_class(
            num_envs, config, autoreset="next_step", render_mode=render_mode, **core_options
        )
        self.num_envs = num_envs
        self.render_mode = render_mode
        self.single_observation_space = observation_space(self.core)
        self.single_action_space = spaces.Discrete(NUM_ACTIONS)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._np_random = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        options = dict(options or {})
        level_seeds = options.pop("level_seeds", None)
        if options:
            raise ValueError(
                f"options={options!r} is invalid; the procgen backend accepts only "
                "{'level_seeds': one level seed per environment}"
            )
        if seed is not None:
            if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
                raise ValueError(
                    f"seed={seed!r} is invalid; the procgen backend takes one int >= 0 (procgen "
                    "seeds all its environments from a single rand_seed) or None"
                )
            obs, info = self.core.start(int(seed))
        elif self.core.env is None:
            obs, info = self.core.start(int(np.random.SeedSequence().generate_state(1)[0] >> 1))
        elif level_seeds is None:
            obs, info = self.core.restart_all()
        if level_seeds is not None:
            obs, info = self.core.start_levels(level_seeds)
        return obs, self._with_masks(info)

    def step(self, actions):
        obs, reward, terminated, truncated, info = self.core.step(actions)
        return obs, reward, terminated, truncated, self._with_masks(info)

    def _with_masks(self, info: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return with_masks(info, self.core.info_keys, self.num_envs)

    def render(self):
        if self.render_mode == "rgb_array" and self.core.env is not None:
            return tuple(self.core.render_frames())
        return None

    def close_extras(self, **kwargs):
        self.core.close()
