"""Stock procgen Maze behind the coinrun_mg interface (``coinrun_mg/ProcgenMaze-v0``).

The game itself is procgen's compiled ``maze`` (``procgen.ProcgenGym3Env``); this module
adds the experiment's knobs on top through procgen's ``get_state`` / ``set_state``, the
way the CoinRun backend (``envs/coinrun/procgen_env.py``) moves its coin:

* **Placing the cheese.**  Whenever an environment starts an episode (``reset``,
  procgen's own automatic resets, forced resets) its state is read.  On a
  ``rand_fraction`` share of levels (decided from the level seed alone, as the CoinRun
  backend decides its moved levels) the cheese stays where procgen put it (uniform over
  the open cells but the start: ``cheese_moved``); on the others it is moved into a
  uniformly chosen open cell of the maze's top-right ``corner_size`` x ``corner_size``
  region (procgenAISC's ``maze_aisc`` for ``corner_size=1``), chosen by the package's
  counter-based hash of the level seed.  The edited state is loaded back before the
  agent sees the first observation.
* **The corner.**  ``reached_corner`` (sticky) says the agent has entered the corner
  region this episode.  Maze moves are grid steps (one cell, or none into a wall), so
  the agent's cell is followed exactly from the actions and the level's walls, without
  reading the state every step; procgen's own cheese ends cross-check it.
* **Symbolic observations** (``obs_mode="symbolic"``) are drawn from the same followed
  state: the whole world as wall, cheese and agent planes (0/255, channels last, row 0
  at the top), the true final state when an episode ends.
* **Gymnasium's NEXT_STEP autoreset**, ending episodes early (``corner_terminates``:
  a forced procgen timeout) and ``max_episode_steps`` (procgen's ``timeout`` field) work
  as in the CoinRun backend: the pixel observation returned with ``terminated`` /
  ``truncated`` is the last frame procgen showed of the ending episode.

procgen is imported only when an environment is created; installing it:
``pip install "coinrun-mg[procgen]"``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch

from ..gym_env import check_render_mode
from ..procgen_env import (  # noqa: F401  (some names re-exported)
    INSTALL_COMMAND,
    NOOP_ACTION,
    NUM_ACTIONS,
    OBSERVATION_SHAPE,
    VECTOR_RESET_DOC,
    ProcgenCore,
    ProcgenEnv,
    ProcgenVectorEnv,
    check_device,
)
from . import levels
from . import procgen_state as ps
from .config import MazeConfig
from .paths import decision_levels

SYMBOLIC_PLANES = ("wall", "cheese", "agent")  # the symbolic channels

# procgen's moves: action a < 9 is (dx, dy) = (a // 3 - 1, a % 3 - 1), Maze drops dy when
# dx != 0; 9..14 stand still.  So 0-2 left, 3 down, 5 up, 6-8 right, the rest no-ops.
ACTION_DX = np.array([-1, -1, -1, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0], dtype=np.int64)
ACTION_DY = np.array([0, 0, 0, -1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0], dtype=np.int64)
LEFT, DOWN, UP, RIGHT = 0, 3, 5, 6

INFO_KEYS = (
    "cheese_collected",
    "reached_corner",
    "cheese_moved",
    "died",
    "timed_out",
    "level_seed",
    "maze_dim",
    "cheese_x",
    "cheese_y",
    "decision_level",
)


# --------------------------------------------------------------------------------------
# Cheese placement: a deterministic function of the level seed
# --------------------------------------------------------------------------------------


def cheese_moved(level_seeds, rand_fraction: float) -> np.ndarray:
    """Whether each level keeps procgen's own cheese (the ``rand_fraction`` share; bool
    array), from its seed alone: nested in the fraction (a level moved at 0.02 is moved
    at 0.1 too)."""
    key = torch.as_tensor(np.asarray(level_seeds, dtype=np.int64).reshape(-1))
    return levels.cheese_moved(key, rand_fraction).numpy()  # the native Maze's own draw


def corner_pick(level_seed: int, count: int) -> int:
    """Which of ``count`` corner candidates a level's cheese takes (uniform)."""
    return int(levels.cheese_choice(torch.tensor([level_seed], dtype=torch.int64), count))


def place_cheese(state: ps.MazeState, config: MazeConfig) -> tuple[int, int, bool]:
    """The cheese cell of a fresh level in maze coordinates: ``(x, y, moved)``.

    ``moved``: the level is on the ``rand_fraction`` share and keeps procgen's cheese;
    otherwise the cheese goes to a uniformly chosen open cell of the top-right
    ``corner_size`` region (not the start).
    """
    stock = state.cheese_cells()
    if len(stock) != 1:
        raise ValueError(f"expected one cheese cell in a fresh maze level, found {len(stock)}")
    seed = state.level_seed
    if cheese_moved([seed], config.rand_fraction)[0]:
        return int(stock[0, 0]), int(stock[0, 1]), True
    cells = ps.corner_cells(ps.open_grid(state), config.corner_size)
    x, y = cells[corner_pick(seed, len(cells))].tolist()
    return x, y, False


class _Level(NamedTuple):
    """What the core keeps about an episode's level."""

    seed: int
    moved: bool
    cheese_x: int
    cheese_y: int
    maze_dim: int
    margin: int
    open_world: np.ndarray  # bool [x, y] over the whole world: not a wall
    decision: bool  # a decision level (paths.py)


def _decision_level(open_world: np.ndarray, maze_dim: int, margin: int, x: int, y: int) -> bool:
    """Whether a level is a decision level (``paths.py``), from its world's open cells
    and the cheese's maze cell ``(x, y)``."""
    maze = levels.MazeLevels(
        wall=torch.from_numpy(~open_world)[None],
        maze_dim=torch.tensor([maze_dim]),
        margin=torch.tensor([margin]),
    )
    cheese_x, cheese_y = torch.tensor([x + margin]), torch.tensor([y + margin])
    return bool(decision_levels(maze, cheese_x, cheese_y)[0])


# --------------------------------------------------------------------------------------
# The batched core over ProcgenGym3Env
# --------------------------------------------------------------------------------------


class ProcgenMazeCore(ProcgenCore):
    """``num_envs`` procgen Maze environments with placed cheese and corner tracking.

    ``start(seed)`` creates procgen's env; ``step(actions)`` follows Gymnasium's NEXT_STEP
    convention (``autoreset="next_step"``) or refuses to step a finished environment
    (``autoreset="disabled"``); ``restart_all()`` moves every environment on to its next
    level; ``start_levels(seeds)`` starts given procgen levels.  Numpy in and out.  The
    agent's cell is ``agent_x, agent_y`` (maze coordinates); ``open_cells(i)`` is the
    open-cell grid of environment ``i``'s level.  Observations are procgen's frames, or
    with ``config.obs_mode == "symbolic"`` the planes of :meth:`symbolic_obs`.
    """

    env_name = "maze"
    env_id = "coinrun_mg/ProcgenMaze-v0"
    state_class = ps.MazeState
    info_keys = INFO_KEYS

    def __init__(
        self,
        num_envs: int,
        config: MazeConfig,
        *,
        autoreset: str = "next_step",
        render_mode: str | None = None,
    ):
        super().__init__(num_envs, config, autoreset=autoreset, render_mode=render_mode)
        n, wd = num_envs, config.world_dim
        self.maze_dim = np.zeros(n, dtype=np.int64)
        self.margin = np.zeros(n, dtype=np.int64)
        self.cheese_x = np.zeros(n, dtype=np.int64)
        self.cheese_y = np.zeros(n, dtype=np.int64)
        self.corner_lo = np.zeros(n, dtype=np.int64)  # the corner region's lowest coordinate
        self.agent_x = np.zeros(n, dtype=np.int64)  # maze coordinates
        self.agent_y = np.zeros(n, dtype=np.int64)
        self.open_world = np.zeros((n, wd, wd), dtype=bool)
        self.decision = np.zeros(n, dtype=bool)

    @property
    def observation_shape(self) -> tuple[int, int, int]:
        if self.config.obs_mode == "symbolic":
            side = self.config.symbolic_side
            return (side, side, len(SYMBOLIC_PLANES))
        return OBSERVATION_SHAPE

    def symbolic_obs(self, eaten: np.ndarray | None = None) -> np.ndarray:
        """uint8 ``[num_envs, world_dim, world_dim, 3]``: wall, cheese and agent planes (0 or
        255) over the whole world, channels last, row 0 at the top (y up in the world); or,
        with ``view_size`` V, ``[num_envs, V, V, 3]`` centred on the agent (wall outside
        the world).  ``eaten`` hides the cheese of environments that have just collected it."""
        n, wd = self.num_envs, self.config.world_dim
        obs = np.zeros((n, wd, wd, len(SYMBOLIC_PLANES)), dtype=np.uint8)
        # World [x, y] -> image [row, col] = [wd - 1 - y, x].
        obs[..., 0] = np.where(self.open_world, 0, 255).transpose(0, 2, 1)[:, ::-1, :]
        rows = np.arange(n)
        show = rows if eaten is None else rows[~eaten]
        obs[
            show,
            wd - 1 - self.margin[show] - self.cheese_y[show],
            (self.margin + self.cheese_x)[show],
            1,
        ] = 255
        agent_row, agent_col = wd - 1 - self.margin - self.agent_y, self.margin + self.agent_x
        obs[rows, agent_row, agent_col, 2] = 255
        view = self.config.view_size
        if not view:
            return obs
        # Agent-centred: pad with wall, cut the window (top-left at the agent's cell).
        r = view // 2
        padded = np.zeros((n, wd + 2 * r, wd + 2 * r, obs.shape[3]), dtype=np.uint8)
        padded[..., 0] = 255
        padded[:, r : r + wd, r : r + wd] = obs
        offsets = np.arange(view)
        window_rows = (agent_row[:, None] + offsets)[:, :, None]
        window_cols = (agent_col[:, None] + offsets)[:, None, :]
        return padded[rows[:, None, None], window_rows, window_cols]

    def _output(self, obs: np.ndarray, eaten: np.ndarray | None = None) -> np.ndarray:
        """The observation handed out: procgen's frames, or the symbolic planes."""
        return self.symbolic_obs(eaten) if self.config.obs_mode == "symbolic" else obs

    def open_cells(self, i: int) -> np.ndarray:
        """Environment ``i``'s maze as bool ``[x, y]`` (maze coordinates, y up): open cells."""
        m, n = int(self.margin[i]), int(self.maze_dim[i])
        return self.open_world[i, m : m + n, m : m + n].copy()

    # -- episode starts -------------------------------------------------------------------
    def _prepare(self, raw: bytes) -> tuple[bytes | None, _Level]:
        """Edit a fresh episode's state (cheese, timeout, level range); returns the new
        bytes (None if unchanged) and the level's facts."""
        st = ps.MazeState.parse(raw)
        if st.agent_cell() != (0, 0):
            raise RuntimeError(f"a fresh maze level has its agent at {st.agent_cell()}, not (0, 0)")
        x, y, moved = place_cheese(st, self.config)
        if not moved:
            st.move_cheese(x, y)
        edited = self._set_episode_options(st) or not moved
        open_world = st.grid != ps.WALL
        level = _Level(
            seed=st.level_seed,
            moved=bool(moved),
            cheese_x=x,
            cheese_y=y,
            maze_dim=st.maze_dim,
            margin=st.margin,
            open_world=open_world,
            decision=_decision_level(open_world, st.maze_dim, st.margin, x, y),
        )
        return (st.serialize() if edited else None), level

    def _install(self, i: int, level: _Level) -> None:
        self.level_seed[i], self.moved[i] = level.seed, level.moved
        self.cheese_x[i], self.cheese_y[i] = level.cheese_x, level.cheese_y
        self.maze_dim[i], self.margin[i] = level.maze_dim, level.margin
        self.corner_lo[i] = ps.corner_region(level.maze_dim, self.config.corner_size)
        self.open_world[i] = level.open_world
        self.decision[i] = level.decision
        self.agent_x[i] = self.agent_y[i] = 0
        self.steps[i] = 0
        self.reached[i] = self.corner_lo[i] == 0  # a region covering the whole maze

    # -- stepping -------------------------------------------------------------------------
    def _move_agents(self, actions: np.ndarray, live: np.ndarray) -> None:
        """Follow procgen's grid step: one cell in the action's direction unless that cell
        is a wall or outside the world (procgen's out-of-bounds object is a wall)."""
        wd = self.config.world_dim
        wx = self.agent_x + self.margin + ACTION_DX[actions]
        wy = self.agent_y + self.margin + ACTION_DY[actions]
        inside = (wx >= 0) & (wx < wd) & (wy >= 0) & (wy < wd)
        rows = np.arange(self.num_envs)
        free = inside & self.open_world[rows, wx.clip(0, wd - 1), wy.clip(0, wd - 1)]
        go = live & free
        self.agent_x[go] = wx[go] - self.margin[go]
        self.agent_y[go] = wy[go] - self.margin[go]

    def _advance(self, actions: np.ndarray):
        # 1. Environments whose episode ended on the previous step start the next one.
        restarting, reward, obs, first = self._act(actions)

        # 2. The agents' moves, then the episodes procgen ended itself (cheese or timeout).
        live = ~restarting
        self._move_agents(actions.astype(np.int64), live)
        self.steps[live] += 1
        ended = first & live
        cheese = ended & (reward > 0)
        on_cheese = (self.agent_x == self.cheese_x) & (self.agent_y == self.cheese_y)
        if (live & (cheese != on_cheese)).any():
            i = int(np.flatnonzero(live & (cheese != on_cheese))[0])
            raise RuntimeError(
                f"environment {i}: procgen {'paid' if cheese[i] else 'did not pay'} the cheese "
                f"at {(int(self.cheese_x[i]), int(self.cheese_y[i]))} but the followed agent "
                f"is at {(int(self.agent_x[i]), int(self.agent_y[i]))}; this procgen build "
                "moves differently from procgen 0.10.7"
            )
        timed_out = ended & ~cheese & (self.steps >= self.config.max_episode_steps)
        if (ended & ~cheese & ~timed_out).any():
            raise RuntimeError("procgen ended a maze episode without the cheese or a timeout")
        in_corner = (self.agent_x >= self.corner_lo) & (self.agent_y >= self.corner_lo)
        self.reached |= live & in_corner
        terminated = cheese.copy()
        truncated = timed_out.copy()
        self._capture_next_episodes(ended, obs)

        # 3. corner_terminates: the corner region ends the episode while the cheese lies
        # outside it (the same rule as Maze-v0).
        if self.config.corner_terminates:
            cheese_in_corner = (self.cheese_x >= self.corner_lo) & (self.cheese_y >= self.corner_lo)
            early = live & ~ended & self.reached & ~cheese_in_corner
            terminated |= early
            for i in np.flatnonzero(early).tolist():
                self._force_end(i, self._get_state(i))

        self._last_obs = obs
        info = self._info(cheese=cheese, timed_out=timed_out)
        return self._output(obs, eaten=cheese), reward, terminated, truncated, info

    # -- infos ----------------------------------------------------------------------------
    def _info(self, cheese=None, timed_out=None) -> dict[str, np.ndarray]:
        false = np.zeros(self.num_envs, dtype=bool)
        return {
            "cheese_collected": false.copy() if cheese is None else cheese,
            "reached_corner": self.reached.copy(),
            "cheese_moved": self.moved.copy(),
            "died": false.copy(),  # nothing kills the mouse
            "timed_out": false.copy() if timed_out is None else timed_out,
            "level_seed": self.level_seed.copy(),
            "maze_dim": self.maze_dim.copy(),
            "cheese_x": self.cheese_x.copy(),
            "cheese_y": self.cheese_y.copy(),
            "decision_level": self.decision.copy(),
        }


# --------------------------------------------------------------------------------------
# Gymnasium facades
# --------------------------------------------------------------------------------------

_DOC_COMMON = """
    ## Description
    Stock procgen Maze (the compiled game from the ``procgen`` package) with the cheese
    placed as the experiment needs, the same knobs and info vocabulary as the native
    ``coinrun_mg/Maze-v0``: on training levels the cheese sits in a uniformly chosen open
    cell of the maze's top-right ``corner_size`` x ``corner_size`` region (1: the corner
    cell, procgenAISC's ``maze_aisc``); on a ``rand_fraction`` share of levels (decided
    per level seed) it stays where procgen put it, anywhere but the start.

    ## Action Space
    ``Discrete(15)``, procgen's: 0-2 left, 3 down, 5 up, 6-8 right; 4 and 9-14 stand still.

    ## Observation Space
    ``obs_mode="pixels"`` (the default here): ``Box(0, 255, (64, 64, 3), uint8)``, procgen's
    top-down view of the whole world.  ``obs_mode="symbolic"``: ``Box(0, 255, (W, W, 3),
    uint8)`` with W the world side (15 easy, 25 hard), planes wall, cheese, agent (0 or
    255), row 0 at the top, drawn from the followed state (procgen still renders);
    with ``view_size`` V (odd), ``Box(0, 255, (V, V, 3), uint8)``: those planes in a window
    centred on the agent, cells outside the world shown as wall.

    ## Rewards
    +10 for the cheese, 0 otherwise.

    ## Starting State
    The mouse in the maze's bottom-left cell of a level procgen generated.

    ## Episode End
    Terminated on the cheese, or (``corner_terminates=True``) when the agent enters the
    corner region while the cheese lies outside it; truncated after
    ``max_episode_steps`` (procgen's timeout, 500 by default).  In pixels, the observation
    returned with a cheese or timeout end is the last frame of that episode procgen
    showed (one step before the end: procgen resets within the step); in symbolic, the
    final state (the agent on the eaten cheese's cell, or where it timed out).

    ## Info
    At reset and every step: ``cheese_collected``, ``reached_corner`` (the agent has
    been in the top-right ``corner_size`` region of the maze this episode), ``cheese_moved``
    (the level is on the ``rand_fraction`` share: procgen's own cheese), ``died`` (always
    False), ``timed_out``, ``level_seed`` (procgen's), ``maze_dim``, ``cheese_x`` and
    ``cheese_y`` (maze coordinates, y up, the start at (0, 0)).

    ## Arguments
    ``distribution_mode`` ("easy" | "hard"), ``num_levels`` (0 = unlimited),
    ``start_level``, ``rand_fraction`` (float in [0, 1]), ``corner_size`` (int >= 1),
    ``corner_terminates`` (default False), ``max_episode_steps`` (500), ``render_mode``
    (None | "rgb_array": procgen's 512 x 512 frames), ``obs_mode`` ("pixels" |
    "symbolic"), ``view_size`` (symbolic only: 0, the whole world, or an odd side >= 3 of
    an agent-centred view); ``device`` may only be "cpu" (procgen runs on the CPU and speaks numpy).

    ## Version History
    * v0: initial release (before the package's first release, ``corner_terminates``
      changed to one rule for both Maze backends: the corner ends the episode only while
      the cheese lies outside the corner region).
"""


def _make_config(obs_mode: str, device, kwargs: dict) -> MazeConfig:
    check_device(device)
    return MazeConfig(obs_mode=obs_mode, **kwargs)


class ProcgenMazeEnv(ProcgenEnv):
    __doc__ = (
        "A single stock-procgen Maze environment (numpy in and out).\n\n"
        "    ``reset(seed=s)`` recreates procgen's env with ``rand_seed=s``; ``reset()``\n"
        "    moves on to the next level.\n" + _DOC_COMMON
    )

    core_class = ProcgenMazeCore

    def __init__(
        self,
        render_mode: str | None = None,
        obs_mode: str = "pixels",
        device: str | None = None,
        **kwargs: Any,
    ):
        check_render_mode(render_mode)
        super().__init__(_make_config(obs_mode, device, kwargs), render_mode)


class ProcgenMazeVectorEnv(ProcgenVectorEnv):
    __doc__ = (
        "``num_envs`` stock-procgen Maze environments in one ``ProcgenGym3Env``.\n\n"
        + VECTOR_RESET_DOC
        + _DOC_COMMON
    )

    core_class = ProcgenMazeCore

    def __init__(
        self,
        num_envs: int = 1,
        render_mode: str | None = None,
        obs_mode: str = "pixels",
        device: str | None = None,
        **kwargs: Any,
    ):
        check_render_mode(render_mode)
        super().__init__(num_envs, _make_config(obs_mode, device, kwargs), render_mode)
