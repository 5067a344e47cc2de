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

import math
from typing import Any

import numpy as np
import torch

from ..checks import true_or_false
from ..gym_env import check_render_mode
from ..procgen_env import (  # noqa: F401  (some names re-exported)
    INSTALL_COMMAND,
    NOOP_ACTION,
    OBSERVATION_SHAPE,
    VECTOR_RESET_DOC,
    ProcgenCore,
    ProcgenEnv,
    ProcgenVectorEnv,
    check_device,
    import_procgen,
)
from . import procgen_state as ps
from .config import OBS_MODES, CoinRunConfig
from .core import INFO_KEYS
from .levels import coin_choice
from .levels import coin_moved as _coin_moved_tensor
from .observation import SYMBOLIC_CHANNELS
from .procgen_native import SymbolicView, native_dynamics, native_level
from .state import AGENT_RX, AGENT_RY, COLLISION_EPS, MAX_SPEED

ENV_ID = "coinrun_mg/ProcgenCoinRun-v0"
# Upper bound on the player's horizontal displacement per step, with a margin over the
# physics' MAX_SPEED so that float rounding can never make a read come too late.
_MAX_DX_PER_STEP = MAX_SPEED * 1.05


def _import_procgen():
    """``procgen``, imported quietly; the error when it is missing names this env."""
    return import_procgen(ENV_ID)


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


def _steps_before_end_reachable(x: float, end_x: int) -> int:
    """How many steps from now the player could first overlap the end column (>= 1)."""
    gap = (end_x - AGENT_RX - 0.5 + COLLISION_EPS) - x  # x must exceed end_x - 0.5
    return max(1, math.floor(gap / _MAX_DX_PER_STEP) + 1)


# --------------------------------------------------------------------------------------
# The batched core over ProcgenGym3Env
# --------------------------------------------------------------------------------------


class ProcgenCoinRunCore(ProcgenCore):
    """``num_envs`` procgen CoinRun environments with moved coins and end tracking.

    ``start(seed)`` creates procgen's env; ``step(actions)`` follows Gymnasium's NEXT_STEP
    convention (``autoreset="next_step"``) or refuses to step a finished environment
    (``autoreset="disabled"``); ``restart_all()`` moves every environment on to its next
    level.  Numpy in and out.  ``agent_x`` / ``agent_y``: the player's position where it
    was read this step (at an episode start, every step with ``track_agent`` or a
    symbolic view), NaN elsewhere; :meth:`coin_cells` says where a config puts the coin
    in each environment's level.
    """

    env_name = "coinrun"
    env_id = ENV_ID
    state_class = ps.CoinRunState
    info_keys = INFO_KEYS

    def __init__(
        self,
        num_envs: int,
        config: CoinRunConfig,
        *,
        track_agent: bool = False,
        autoreset: str = "next_step",
        render_mode: str | None = None,
    ):
        true_or_false("track_agent", track_agent)
        super().__init__(num_envs, config, autoreset=autoreset, render_mode=render_mode)
        self.track_agent = track_agent
        n = num_envs
        self.coin_x = np.zeros(n, dtype=np.int64)
        self.coin_y = np.zeros(n, dtype=np.int64)
        self.end_x = np.zeros(n, dtype=np.int64)
        self.end_y = np.zeros(n, dtype=np.int64)
        self.agent_x = np.full(n, np.nan, dtype=np.float32)
        self.agent_y = np.full(n, np.nan, dtype=np.float32)
        self._layouts: list[ps.LevelLayout | None] = [None] * n  # each episode's level
        self.next_read = np.zeros(n, dtype=np.int64)  # episode step of the next position read
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
    def _read_player(self, i: int) -> tuple[float, float]:
        """The player's position, read without copying the state out of the buffer."""
        return ps.player_position(self._read_into_buffer(i), self._buf_len)

    def _read_dynamics(self, i: int) -> tuple[float, float]:
        """Symbolic mode: read the agent and the enemies into the view; the player's
        position.  The state stays in the buffer, as after :meth:`_read_player`."""
        moving = native_dynamics(ps.entity_records(self._read_into_buffer(i), self._buf_len))
        self._view.set_dynamics(i, moving)
        return moving.agent[0], moving.agent[1]

    # -- episode starts -------------------------------------------------------------------
    def _prepare(self, raw: bytes) -> tuple[bytes | None, tuple]:
        """Edit a fresh episode's state (coin, timeout, level range); returns new bytes or
        None, and the level's facts."""
        st = ps.CoinRunState.parse(raw)
        layout = ps.read_layout(st)
        seed = st.level_seed
        x, y, moved = place_coin(layout, seed, self.config)
        if moved:
            st.grid[layout.end_x, layout.end_y] = ps.EMPTY
            st.grid[x, y] = ps.COIN
        edited = self._set_episode_options(st) or moved
        level = native_level(st) if self.symbolic else None
        player = (float(st.player["x"]), float(st.player["y"]))
        facts = (seed, moved, x, y, layout, player, level)
        return (st.serialize() if edited else None), facts

    def _install(self, i: int, facts: tuple) -> None:
        """Make ``facts`` environment ``i``'s episode; a symbolic view also reads its
        level, agent and enemies from procgen's (already loaded) state."""
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
        if self.symbolic:
            self._read_dynamics(i)

    # -- observations: symbolic views draw their own --------------------------------------
    def _started_obs(self, frames: np.ndarray) -> np.ndarray:
        return self._view.observe() if self.symbolic else frames

    def _restarted_obs(self, restarted: np.ndarray) -> np.ndarray:
        # Other environments show what the step returned; the restarted ones their new
        # first frame, which is also the last frame shown if their next step ends.
        if not self.symbolic:
            return super()._restarted_obs(restarted)
        obs = self._last_obs.copy()
        obs[restarted] = self._view.observe()[restarted]
        return obs

    # -- stepping -------------------------------------------------------------------------
    def _advance(self, actions: np.ndarray):
        self.agent_x[:] = np.nan  # until read this step: at an episode start or in part 3
        self.agent_y[:] = np.nan
        # 1. Environments whose episode ended on the previous step start the next one.
        restarting, reward, obs, first = self._act(actions)

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
        self._capture_next_episodes(ended, obs)

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
                    self._force_end(i, self._buffered_state())
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
    check_device(device)
    if view_size is not None:
        kwargs = dict(kwargs, view_size=view_size)
    return CoinRunConfig(obs_mode=obs_mode, **kwargs)


class ProcgenCoinRunEnv(ProcgenEnv):
    __doc__ = (
        "A single stock-procgen CoinRun environment (numpy in and out).\n\n"
        "    ``reset(seed=s)`` recreates procgen's env with ``rand_seed=s``; ``reset()``\n"
        "    moves on to the next level.  ``track_agent`` defaults to True here (exact\n"
        "    ``agent_x`` every step).\n" + _DOC_COMMON
    )

    core_class = ProcgenCoinRunCore

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
        config = _make_config(obs_mode, view_size, device, kwargs)
        super().__init__(config, render_mode, track_agent=track_agent)


class ProcgenCoinRunVectorEnv(ProcgenVectorEnv):
    __doc__ = (
        "``num_envs`` stock-procgen CoinRun environments in one ``ProcgenGym3Env``.\n\n"
        + VECTOR_RESET_DOC
        + _DOC_COMMON
    )

    core_class = ProcgenCoinRunCore

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
        config = _make_config(obs_mode, view_size, device, kwargs)
        super().__init__(num_envs, config, render_mode, track_agent=track_agent)
