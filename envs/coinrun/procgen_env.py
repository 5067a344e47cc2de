"""Stock procgen CoinRun behind the coinrun_mg interface (``coinrun_mg/ProcgenCoinRun-v0``).

The game itself is procgen's compiled CoinRun (``procgen.ProcgenGym3Env``); this module
adds what the experiment needs on top, through procgen's ``get_state`` / ``set_state``:

* **Moving the coin.**  Whenever an environment starts an episode (``reset``, procgen's
  own automatic resets, forced resets) its state is read, and if the level's seed says
  so (``coin_moved``: the same counter-based hash of the seed as the native env) the coin
  cell is emptied and the coin written into the chosen cell before the agent sees the
  first observation.  Only the environments that start an episode are read.
* **The original end.**  ``reached_end`` is tracked against the original coin cell.  In
  a level whose coin was not moved, touching the end *is* collecting the coin, so it is
  the coin event.  In a moved level the player's position is read from the state
  bytes, but only on the steps where the end could be within reach: the player moves at
  most ``MAX_SPEED`` tiles a step, so after each read the next one is scheduled for the
  first step on which it could touch the end cell.  Reading a state costs more than a
  procgen step, which is why positions are not read every step.
* **Symbolic observations** (``obs_mode="symbolic"``): the native env's planes, drawn
  by its own observation function from a native state converted from procgen's
  (``procgen_native.py``): the level's tiles once per episode, the agent and the
  walking enemies from every environment's state after every step.
* **Gymnasium's NEXT_STEP autoreset** on top of procgen's same-step reset: when procgen
  ends an episode it has already generated the next level, so the state of that new
  level is captured at once (with the coin moved if needed) and loaded back on the
  next ``step`` call, whose action is ignored as Gymnasium asks.  The observation
  returned with ``terminated``/``truncated`` is the last frame procgen showed of the
  ending episode (procgen never exposes the terminal frame itself); when the episode
  ends at the original end (``end_terminates``) it is the true terminal frame.
* **Ending an episode early** (``end_terminates=True``): procgen has no per-environment
  reset, so the environment's ``cur_time`` is set one step short of its ``timeout``;
  the next step (whose action is ignored anyway) makes procgen time out and draw its
  next level exactly as it always does.  ``max_episode_steps`` is procgen's own
  ``timeout`` field, written into each environment's state.

procgen is imported only when an environment is created; installing it:
``pip install "coinrun-mg[procgen]"``.
"""

from __future__ import annotations

import contextlib
import io
import math
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import VectorEnv
from gymnasium.vector.utils import batch_space

from ..gym_env import VECTOR_METADATA, check_render_mode
from . import procgen_state as ps
from .config import OBS_MODES, CoinRunConfig
from .core import INFO_KEYS
from .levels import coin_choice
from .levels import coin_moved as _coin_moved_tensor
from .observation import SYMBOLIC_CHANNELS
from .procgen_native import SymbolicView, native_dynamics, native_level
from .state import AGENT_RX, AGENT_RY, COLLISION_EPS, MAX_SPEED, NUM_ACTIONS

INSTALL_COMMAND = 'pip install "coinrun-mg[procgen]"'
OBSERVATION_SHAPE = (64, 64, 3)
NOOP_ACTION = 4  # (none, none): used for the ignored step of a forced reset
_STATE_BUFFER_BYTES = 1 << 20  # procgen's own MAX_STATE_SIZE
# Upper bound on the player's horizontal displacement per step, with a margin over the
# physics' MAX_SPEED so that float rounding can never make a read come too late.
_MAX_DX_PER_STEP = MAX_SPEED * 1.05


def _import_procgen():
    """``procgen``, imported quietly (its old ``gym`` dependency prints a banner)."""
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            import procgen
    except ImportError as exc:
        raise ImportError(
            f"coinrun_mg/ProcgenCoinRun-v0 needs stock procgen, which is not installed "
            f"({exc}). Install it with: {INSTALL_COMMAND}"
        ) from exc
    return procgen


# --------------------------------------------------------------------------------------
# Coin placement: a deterministic function of the level seed
# --------------------------------------------------------------------------------------


def coin_moved(level_seeds, rand_fraction: float) -> np.ndarray:
    """Whether each level's coin is moved (bool array), from its seed alone.

    The same hash and stream as the native env (``levels.place_coins``), so a given
    seed gets the same decision in both backends (their levels differ, of course).
    A level without a candidate cell keeps its coin even when this says True.
    """
    key = torch.as_tensor(np.asarray(level_seeds, dtype=np.int64).reshape(-1))
    return _coin_moved_tensor(key, rand_fraction).numpy()


def place_coin(layout: ps.LevelLayout, level_seed: int, config: CoinRunConfig):
    """The coin cell of a level: ``(x, y, moved)``.

    A moved coin goes to a uniformly chosen candidate: "section", the left edge of a
    section on top of the ground; "anywhere", any safe standing cell from x = 5 up to the
    end.  ``coin_region=(lo, hi)`` keeps candidates with ``lo * end_x <= x <= hi * end_x``
    and falls back to the candidates nearest to that range (as the native env does).
    """
    end = (layout.end_x, layout.end_y, False)
    if not coin_moved([level_seed], config.rand_fraction)[0]:
        return end
    cand = layout.sections if config.coin_placement == "section" else layout.standing
    if len(cand) == 0:
        return end
    lo, hi = config.coin_region
    x = cand[:, 0].astype(np.float64)
    distance = np.maximum(lo * layout.end_x - x, 0.0) + np.maximum(x - hi * layout.end_x, 0.0)
    best = cand[distance <= distance.min()]
    pick = int(coin_choice(torch.tensor([level_seed], dtype=torch.int64), len(best)))
    return int(best[pick, 0]), int(best[pick, 1]), True


def _overlaps_cell(x: float, y: float, cx: int, cy: int) -> bool:
    """The player's box overlaps cell ``(cx, cy)`` by more than the contact margin."""
    return (
        abs(x - (cx + 0.5)) < AGENT_RX + 0.5 - COLLISION_EPS
        and abs(y - (cy + 0.5)) < AGENT_RY + 0.5 - COLLISION_EPS
    )


def _level_range(st: ps.CoinRunState) -> tuple[int, int]:
    """procgen's level-seed range of a state: ``[low, high)``, drawn from at every reset."""
    return int(st.options["level_seed_low"]), int(st.options["level_seed_high"])


def _steps_before_end_reachable(x: float, end_x: int) -> int:
    """How many steps from now the player could first overlap the end column (>= 1)."""
    gap = (end_x - AGENT_RX - 0.5 + COLLISION_EPS) - x  # x must exceed end_x - 0.5
    return max(1, math.floor(gap / _MAX_DX_PER_STEP) + 1)


# --------------------------------------------------------------------------------------
# The batched core over ProcgenGym3Env
# --------------------------------------------------------------------------------------


class ProcgenCoinRunCore:
    """``num_envs`` procgen CoinRun environments with moved coins and end tracking.

    ``start(seed)`` creates procgen's env; ``step(actions)`` follows Gymnasium's NEXT_STEP
    convention (``autoreset="next_step"``) or refuses to step a finished environment
    (``autoreset="disabled"``); ``restart_all()`` moves every environment on to its next
    level.  Numpy in and out.  ``agent_x`` / ``agent_y``: the player's position where it
    was read this step (at an episode start, every step with ``track_agent`` or a
    symbolic view), NaN elsewhere; :meth:`coin_cells` says where a config puts the coin
    in each environment's level.
    """

    def __init__(
        self,
        num_envs: int,
        config: CoinRunConfig,
        *,
        track_agent: bool = False,
        autoreset: str = "next_step",
        render_mode: str | None = None,
    ):
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs={num_envs!r} is invalid; it must be an int >= 1")
        if not isinstance(track_agent, bool):
            raise ValueError(f"track_agent={track_agent!r} is invalid; use True or False")
        self._procgen = _import_procgen()
        self.num_envs = num_envs
        self.config = config
        self.track_agent = track_agent
        self.autoreset = autoreset
        self.render_mode = render_mode
        self.env = None  # procgen.ProcgenGym3Env once started
        n = num_envs
        self.steps = np.zeros(n, dtype=np.int64)
        self.level_seed = np.zeros(n, dtype=np.int64)
        self.moved = np.zeros(n, dtype=bool)
        self.coin_x = np.zeros(n, dtype=np.int64)
        self.coin_y = np.zeros(n, dtype=np.int64)
        self.end_x = np.zeros(n, dtype=np.int64)
        self.end_y = np.zeros(n, dtype=np.int64)
        self.reached = np.zeros(n, dtype=bool)
        self.agent_x = np.full(n, np.nan, dtype=np.float32)
        self.agent_y = np.full(n, np.nan, dtype=np.float32)
        self._layouts: list[ps.LevelLayout | None] = [None] * n  # each episode's level
        self.next_read = np.zeros(n, dtype=np.int64)  # episode step of the next position read
        self.pending = np.zeros(n, dtype=bool)  # episode over: the next step restarts it
        self.forced = np.zeros(n, dtype=bool)  # ... by a forced procgen timeout
        self._restore: list[bytes | None] = [None] * n  # next episode's state to load
        self._upcoming: list[tuple | None] = [None] * n  # and its level facts
        self._last_obs: np.ndarray | None = None
        self._level_range: tuple[int, int] | None = None  # procgen's, as configured
        self.state_reads = 0  # get_state calls (for benchmarks)
        self.state_writes = 0
        # obs_mode="symbolic": the native view, drawn from procgen's state after each step.
        self.symbolic = config.obs_mode == "symbolic"
        self._view = SymbolicView(n, config.view_size) if self.symbolic else None

    @property
    def observation_shape(self) -> tuple[int, int, int]:
        if self.symbolic:
            v = self.config.view_size
            return (v, v, SYMBOLIC_CHANNELS)
        return OBSERVATION_SHAPE

    # -- procgen access -------------------------------------------------------------------
    def _get_state(self, i: int) -> bytes:
        n = self.env.call_c_func("get_state", i, self._buf, _STATE_BUFFER_BYTES)
        self.state_reads += 1
        return bytes(self.env._ffi.buffer(self._buf, n))

    def _read_player(self, i: int) -> tuple[float, float]:
        """The player's position, read without copying the state out of the buffer."""
        n = self.env.call_c_func("get_state", i, self._buf, _STATE_BUFFER_BYTES)
        self.state_reads += 1
        self._buf_len = n
        return ps.player_position(self.env._ffi.buffer(self._buf, n), n)

    def _read_dynamics(self, i: int) -> tuple[float, float]:
        """Symbolic mode: read the agent and the enemies into the view; the player's
        position.  The state stays in the buffer, as after :meth:`_read_player`."""
        n = self.env.call_c_func("get_state", i, self._buf, _STATE_BUFFER_BYTES)
        self.state_reads += 1
        self._buf_len = n
        moving = native_dynamics(ps.entity_records(self.env._ffi.buffer(self._buf, n), n))
        self._view.set_dynamics(i, moving)
        return moving.agent[0], moving.agent[1]

    def _set_state(self, i: int, data: bytes) -> None:
        self.env.call_c_func("set_state", i, data, len(data))
        self.state_writes += 1

    def _observe(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rew, obs, first = self.env.observe()
        return rew.astype(np.float32), obs["rgb"], first

    # -- episode starts -------------------------------------------------------------------
    def _prepare(self, raw: bytes) -> tuple[bytes | None, tuple]:
        """Edit a fresh episode's state (coin, timeout); returns new bytes or None."""
        st = ps.CoinRunState.parse(raw)
        layout = ps.read_layout(st)
        seed = st.level_seed
        x, y, moved = place_coin(layout, seed, self.config)
        edited = False
        if moved:
            st.grid[layout.end_x, layout.end_y] = ps.EMPTY
            st.grid[x, y] = ps.COIN
            edited = True
        if int(st.game["timeout"]) != self.config.max_episode_steps:
            st.game["timeout"] = self.config.max_episode_steps
            edited = True
        if self._level_range is not None and self._level_range != _level_range(st):
            # A level chosen by start_levels lasts one episode: draw from the range again.
            st.options["level_seed_low"], st.options["level_seed_high"] = self._level_range
            edited = True
        level = native_level(st) if self.symbolic else None
        player = (float(st.player["x"]), float(st.player["y"]))
        facts = (seed, moved, x, y, layout, player, level)
        return (st.serialize() if edited else None), facts

    def _install(self, i: int, facts: tuple) -> None:
        seed, moved, x, y, layout, (agent_x, agent_y), level = facts
        if level is not None:
            self._view.set_level(i, level)
        self.level_seed[i], self.moved[i] = seed, moved
        self.coin_x[i], self.coin_y[i] = x, y
        self.end_x[i], self.end_y[i] = layout.end_x, layout.end_y
        self._layouts[i] = layout
        self.steps[i] = 0
        self.reached[i] = False
        self.agent_x[i], self.agent_y[i] = agent_x, agent_y
        self.next_read[i] = _steps_before_end_reachable(agent_x, layout.end_x)

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
            env_name="coinrun",
            distribution_mode=cfg.distribution_mode,
            num_levels=cfg.num_levels,
            start_level=cfg.start_level,
            rand_seed=int(seed),
            render_mode=self.render_mode,
        )
        # One reusable buffer for get_state (procgen's own wrapper allocates 1 MiB a call).
        self._buf = self.env._ffi.new("char[]", _STATE_BUFFER_BYTES)
        self._buf_len = 0
        self._level_range = None
        self._level_range = _level_range(ps.CoinRunState.parse(self._get_state(0)))
        for i in range(self.num_envs):
            data, facts = self._prepare(self._get_state(i))
            if data is not None:
                self._set_state(i, data)
            self._install(i, facts)
        self.pending[:] = False
        self.forced[:] = False
        self._restore = [None] * self.num_envs
        self._upcoming = [None] * self.num_envs
        _, obs, _ = self._observe()
        if self.symbolic:
            for i in range(self.num_envs):
                self._read_dynamics(i)
            obs = self._view.observe()
        self._last_obs = obs
        return obs, self._info()

    def _force_end(self, i: int, raw: bytes) -> None:
        """Make procgen end environment ``i``'s episode (a timeout) on its next step."""
        st = ps.CoinRunState.parse(raw)
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
            st = ps.CoinRunState.parse(self._get_state(i))
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
        frame of the new episode where restarted) and the bool mask of the restarted
        environments.  Episodes ended early at the original end (``end_terminates``)
        stay pending: procgen only draws their next level on its next step.
        """
        restarted = self.pending & ~self.forced
        for i in np.flatnonzero(restarted).tolist():
            # procgen has already drawn the next level; load the captured (edited) start.
            self._set_state(i, self._restore[i])
            self._install(i, self._upcoming[i])
            self._restore[i] = self._upcoming[i] = None
        if not restarted.any():
            return self._last_obs, restarted
        self.pending &= ~restarted
        # Other environments show what the step returned; the restarted ones their new
        # first frame, which is also the last frame shown if their next step ends.
        if self.symbolic:
            for i in np.flatnonzero(restarted).tolist():
                self._read_dynamics(i)
            obs = self._last_obs.copy()
            obs[restarted] = self._view.observe()[restarted]
            self._last_obs = obs
        else:
            _, self._last_obs, _ = self._observe()
        return self._last_obs, restarted

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
        a = np.asarray(actions)
        if a.shape != (self.num_envs,) or not np.issubdtype(a.dtype, np.integer):
            raise ValueError(
                f"actions of shape {a.shape} and dtype {a.dtype} are invalid; "
                f"expected ({self.num_envs},) integers in [0, {NUM_ACTIONS})"
            )
        if ((a < 0) | (a >= NUM_ACTIONS)).any():
            bad = a[(a < 0) | (a >= NUM_ACTIONS)][0]
            raise ValueError(
                f"action {bad} is out of range; actions must be integers in [0, {NUM_ACTIONS})"
            )
        return a.astype(np.int32)

    def _advance(self, actions: np.ndarray):
        restarting = self.pending.copy()
        self.env.act(actions)
        reward, obs, first = self._observe()
        self.agent_x[:] = np.nan
        self.agent_y[:] = np.nan

        # 1. Environments whose episode ended on the previous step start the next one.
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
            if data is not None:
                self._set_state(i, data)
                reloaded = True
            self._install(i, facts)
            self._restore[i] = self._upcoming[i] = None
            if self.symbolic:
                self._read_dynamics(i)
        if reloaded:
            _, obs, _ = self._observe()
        reward[restarting] = 0.0
        self.pending[:] = False
        self.forced[:] = False

        # 2. Episodes procgen ended itself on this step (coin, death or timeout).
        live = ~restarting
        self.steps[live] += 1
        ended = first & live
        coin = ended & (reward > 0)
        timed_out = ended & ~coin & (self.steps >= self.config.max_episode_steps)
        died = ended & ~coin & ~timed_out
        terminated = coin | died
        truncated = timed_out.copy()
        self.reached |= coin & ~self.moved  # an unmoved coin sits on the end cell
        if self.symbolic:  # every other observation is drawn at the end
            obs = np.empty_like(self._last_obs)
        for i in np.flatnonzero(ended).tolist():
            obs[i] = self._last_obs[i]  # procgen already shows the next level
            raw = self._get_state(i)
            data, facts = self._prepare(raw)
            self._restore[i] = raw if data is None else data
            self._upcoming[i] = facts
            self.pending[i] = True

        # 3. Where the original end matters (moved coin), read the player when it could
        #    be there; with track_agent, read every live environment.  Symbolic views
        #    read every live environment anyway (the agent and the enemies).
        read = live & ~ended
        if not (self.track_agent or self.symbolic):
            read &= self.moved & (self.steps >= self.next_read)
        for i in np.flatnonzero(read).tolist():
            x, y = self._read_dynamics(i) if self.symbolic else self._read_player(i)
            self.agent_x[i], self.agent_y[i] = x, y
            if _overlaps_cell(x, y, int(self.end_x[i]), int(self.end_y[i])):
                self.reached[i] = True
                if self.config.end_terminates and self.moved[i]:
                    terminated[i] = True
                    self._force_end(i, bytes(self.env._ffi.buffer(self._buf, self._buf_len)))
            self.next_read[i] = self.steps[i] + _steps_before_end_reachable(x, int(self.end_x[i]))

        if self.symbolic:
            drawn = ~ended  # live ones read above, restarted ones in part 1
            obs[drawn] = self._view.observe()[drawn]
        self._last_obs = obs
        info = self._info(coin=coin, died=died, timed_out=timed_out)
        return obs, reward, terminated, truncated, info

    def coin_cells(self, config: CoinRunConfig) -> tuple[np.ndarray, np.ndarray]:
        """Where ``config`` (its ``rand_fraction``, ``coin_placement``, ``coin_region``)
        puts the coin in each environment's current level: ``(x, y)`` int64 arrays."""
        cells = [
            place_coin(layout, int(seed), config)[:2] if layout is not None else (-1, -1)
            for layout, seed in zip(self._layouts, self.level_seed.tolist())
        ]
        xs, ys = zip(*cells)
        return np.array(xs, dtype=np.int64), np.array(ys, dtype=np.int64)

    # -- infos ----------------------------------------------------------------------------
    def _info(self, coin=None, died=None, timed_out=None) -> dict[str, np.ndarray]:
        false = np.zeros(self.num_envs, dtype=bool)
        return {
            "coin_collected": false if coin is None else coin,
            "reached_end": self.reached.copy(),
            "died": false.copy() if died is None else died,
            "timed_out": false.copy() if timed_out is None else timed_out,
            "coin_randomized": self.moved.copy(),
            "level_seed": self.level_seed.copy(),
            "agent_x": self.agent_x.copy(),
            "coin_x": self.coin_x.copy(),
            "end_x": self.end_x.copy(),
        }

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

_DOC_COMMON = """
    ## Description
    Stock procgen CoinRun (the compiled game from the ``procgen`` package) with the coin
    optionally moved away from the end of the level, the same experiment knob and info
    vocabulary as the native ``coinrun_mg/CoinRun-v0``.  With ``rand_fraction > 0`` that
    fraction of levels (decided per level seed, the same function of the seed as the
    native env) has its coin moved before the first observation ("section": the left
    edge of a random section, on the ground; "anywhere": any safe standing cell); the
    original end cell is tracked as ``reached_end``.

    ## Action Space
    ``Discrete(15)``, procgen's: 0..8 are (left, none, right) x (down, none, up); 9..14
    stand still.

    ## Observation Space
    ``obs_mode="pixels"`` (the default): ``Box(0, 255, (64, 64, 3), uint8)``, procgen's
    agent-centred RGB view.  ``obs_mode="symbolic"``: ``Box(0, 255, (view_size,
    view_size, 10), uint8)``, the native ``coinrun_mg/CoinRun-v0``'s symbolic planes
    (solid, lava, saw, crate, coin, enemy, vx, vy, x_frac, y_frac; ``view_size`` 13 by
    default), drawn by the native observation code from procgen's state after every
    step (``envs/coinrun/procgen_native.py``).  With a coin/death/timeout end the
    returned observation is the one of the step before, as in pixels.

    ## Rewards
    +10 for the coin, 0 otherwise.

    ## Starting State
    The agent stands at x = 1.5 on the floor at the left of a level procgen generated.

    ## Episode End
    Terminated on the coin, lava, a saw or an enemy, or (``end_terminates=True``, moved
    coins only) on touching the original end cell; truncated after
    ``max_episode_steps`` (procgen's timeout, 1000 by default).  The observation returned
    with a coin/death/timeout end is the last frame of that episode procgen showed (one
    step before the end: procgen resets within the step and never exposes the terminal
    frame).  An episode ending at exactly the last step with reward 0 counts as a
    timeout even if the agent died on it (procgen does not say which).

    ## Info
    At reset and every step: ``coin_collected``, ``reached_end`` (touched the original
    end this episode; in levels whose coin was not moved this is the coin itself),
    ``died``, ``timed_out``, ``coin_randomized``, ``level_seed`` (procgen's),
    ``agent_x`` (see ``track_agent``), ``coin_x``, ``end_x``.

    ## Arguments
    ``distribution_mode`` ("easy" | "hard"), ``num_levels`` (0 = unlimited),
    ``start_level``, ``rand_fraction`` (float in [0, 1]), ``coin_placement``
    ("section" | "anywhere"), ``coin_region`` ((lo, hi) fractions of the level length),
    ``end_terminates`` (default False), ``max_episode_steps`` (1000), ``render_mode``
    (None | "rgb_array": procgen's 512 x 512 frames), ``track_agent`` (read the player's
    position every step so that ``agent_x`` is always set; costs a state read per env
    and step, several times slower; otherwise ``agent_x`` is NaN on steps where the position
    was not read; symbolic views read every step anyway).  ``obs_mode`` ("pixels" |
    "symbolic"), ``view_size`` (symbolic only: an odd int >= 3, default 13); ``device``
    may only be "cpu" (procgen runs on the CPU and speaks numpy).

    ## Version History
    * v0: initial release.
"""


def _make_config(obs_mode: str, view_size, device, kwargs: dict) -> CoinRunConfig:
    if obs_mode not in OBS_MODES:
        raise ValueError(f"obs_mode={obs_mode!r} is invalid; accepted values are {OBS_MODES}")
    if obs_mode == "pixels" and view_size is not None:
        raise ValueError(
            f"view_size={view_size!r} is invalid with obs_mode='pixels': it sizes symbolic "
            "observations, and procgen's pixels are always 64x64; leave it out or use "
            "obs_mode='symbolic'"
        )
    if device not in (None, "cpu"):
        raise ValueError(
            f"device={device!r} is invalid for the procgen backend: procgen runs on the CPU "
            "and returns numpy arrays; leave it out or pass 'cpu'"
        )
    if view_size is not None:
        kwargs = dict(kwargs, view_size=view_size)
    return CoinRunConfig(obs_mode=obs_mode, **kwargs)


def _observation_space(core: ProcgenCoinRunCore) -> spaces.Box:
    return spaces.Box(0, 255, shape=core.observation_shape, dtype=np.uint8)


class ProcgenCoinRunEnv(gym.Env):
    __doc__ = (
        "A single stock-procgen CoinRun environment (numpy in and out).\n\n"
        "    ``reset(seed=s)`` recreates procgen's env with ``rand_seed=s``; ``reset()``\n"
        "    moves on to the next level.  ``track_agent`` defaults to True here (exact\n"
        "    ``agent_x`` every step).\n" + _DOC_COMMON
    )

    metadata = {"render_modes": ["rgb_array"], "render_fps": 15}

    def __init__(
        self,
        render_mode: str | None = None,
        obs_mode: str = "pixels",
        view_size: int | None = None,
        device: str | None = None,
        track_agent: bool = True,
        **kwargs: Any,
    ):
        check_render_mode(render_mode)
        self.config = _make_config(obs_mode, view_size, device, kwargs)
        self.core = ProcgenCoinRunCore(
            1, self.config, track_agent=track_agent, autoreset="disabled", render_mode=render_mode
        )
        self.render_mode = render_mode
        self.observation_space = _observation_space(self.core)
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
        obs, reward, terminated, truncated, info = self.core.step(np.array([int(action)]))
        return (
            obs[0],
            float(reward[0]),
            bool(terminated[0]),
            bool(truncated[0]),
            {k: v[0].item() for k, v in info.items()},
        )

    def render(self):
        if self.render_mode == "rgb_array" and self.core.env is not None:
            return self.core.render_frames()[0]
        return None

    def close(self):
        self.core.close()


class ProcgenCoinRunVectorEnv(VectorEnv):
    __doc__ = (
        "``num_envs`` stock-procgen CoinRun environments in one ``ProcgenGym3Env``.\n\n"
        "    Autoreset follows Gymnasium's NEXT_STEP convention.  ``reset(seed=s)``\n"
        "    recreates procgen's env with ``rand_seed=s`` (procgen derives each env's\n"
        "    level sequence from it, so the levels depend on ``num_envs``); ``reset()``\n"
        "    moves every env on to its next level; ``reset(options={'level_seeds': seeds})``\n"
        "    starts env ``i`` on procgen level ``seeds[i]`` (its later episodes draw from\n"
        "    the configured levels again).  The core is ``self.core``.\n" + _DOC_COMMON
    )

    metadata = VECTOR_METADATA

    def __init__(
        self,
        num_envs: int = 1,
        render_mode: str | None = None,
        obs_mode: str = "pixels",
        view_size: int | None = None,
        device: str | None = None,
        track_agent: bool = False,
        **kwargs: Any,
    ):
        check_render_mode(render_mode)
        self.config = _make_config(obs_mode, view_size, device, kwargs)
        self.core = ProcgenCoinRunCore(
            num_envs,
            self.config,
            track_agent=track_agent,
            autoreset="next_step",
            render_mode=render_mode,
        )
        self.num_envs = num_envs
        self.render_mode = render_mode
        self.single_observation_space = _observation_space(self.core)
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
        everywhere = np.ones(self.num_envs, dtype=bool)
        out: dict[str, np.ndarray] = {}
        for key in INFO_KEYS:
            out[key] = info[key]
            out["_" + key] = everywhere
        return out

    def render(self):
        if self.render_mode == "rgb_array" and self.core.env is not None:
            return tuple(self.core.render_frames())
        return None

    def close_extras(self, **kwargs):
        self.core.close()
