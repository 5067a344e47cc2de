"""Maze's Gymnasium facades: the family's facades (``envs/gym_env.py``) over
``MazeCore``, with Maze's documentation."""

from __future__ import annotations

from ..gym_env import CoreEnv, CoreVectorEnv
from .config import MazeConfig
from .core import MazeCore

_DOC_COMMON = """
    ## Description
    procgen's Maze written in batched torch, with the cheese in the top-right corner
    region of training levels (procgenAISC's ``maze_aisc``).  The world is 15 x 15 cells
    (easy) or 25 x 25 (hard); each level draws an odd maze side ``maze_dim`` uniformly
    from 3 to the world side, centres the maze in the world (walls all around it) and
    carves it by randomised Kruskal, so the open cells form a tree (a perfect maze).  The
    mouse starts in the bottom-left cell.  The cheese sits in a uniformly chosen open cell
    of the maze's top-right ``corner_size`` x ``corner_size`` region; on a
    ``rand_fraction`` share of levels (decided per level seed) it sits in any open cell
    but the start, as in stock procgen.

    ## Action Space
    ``Discrete(15)`` as in procgen: 0-2 step left, 3 down, 5 up, 6-8 right; 4 and 9-14
    stand still.  A step into a wall (or out of the world) leaves the mouse in place.

    ## Observation Space
    The whole world, row 0 at the top (procgen draws ``y`` upwards).
    ``obs_mode="symbolic"``: ``Box(0, 255, (D, D, 3), uint8)`` with ``D`` the world side,
    planes wall, cheese, agent (0 or 255), the layout of CoinRun's symbolic view.
    ``obs_mode="pixels"``: ``Box(0, 255, (64, 64, 3), uint8)``, the world as procgen lays
    it out in its 64 x 64 frame, drawn in plain colours (procgen's sprites and per-level
    backgrounds are not shipped): walls sand, open cells dark, cheese yellow, mouse grey.
    With ``view_size`` V (odd, symbolic only): ``Box(0, 255, (V, V, 3), uint8)``, the
    same planes in a window centred on the agent, cells outside the world shown as wall
    (``2 * D - 1`` keeps the whole world in view).

    ## Rewards
    +10 for reaching the cheese; 0 otherwise.

    ## Starting State
    The mouse in maze cell (0, 0), the bottom-left corner of the maze.

    ## Episode End
    Terminated when the mouse reaches the cheese or (with ``corner_terminates=True``)
    enters the corner region while the cheese lies outside it; truncated after
    ``max_episode_steps`` (500) steps.

    ## Info
    At reset and every step: ``cheese_collected``, ``reached_corner`` (has been in the
    top-right ``corner_size`` region this episode), ``died`` (always False),
    ``timed_out``, ``cheese_moved`` (the level is one of the ``rand_fraction`` share),
    ``level_seed``, ``decision_level`` (the paths from the start to the cheese and to the
    top-right cell part before either ends), and the world cells ``agent_x``,
    ``agent_y``, ``cheese_x``, ``cheese_y`` (``y`` up).

    ## Arguments
    ``obs_mode`` ("symbolic" | "pixels"), ``distribution_mode`` ("easy" | "hard"),
    ``num_levels`` (0 = unlimited), ``start_level``, ``rand_fraction`` (float in [0, 1]),
    ``corner_size`` (int >= 1, default 1: the top-right cell), ``corner_terminates``
    (default False), ``max_episode_steps`` (500), ``view_size`` (0, the whole world, or
    an odd side >= 3 of an agent-centred symbolic view), ``device`` ("auto" | "cpu" | "cuda"),
    ``render_mode`` (None | "rgb_array"), ``compile`` ("auto" | True | False: run the
    step through ``torch.compile``; "auto" does on CUDA).

    ## Version History
    * v0: initial release (before the package's first release, ``corner_terminates``
      changed to one rule for both Maze backends: the corner ends the episode only while
      the cheese lies outside the corner region); ``view_size`` added, its default (0)
      the observations as before.
"""


class MazeEnv(CoreEnv):
    __doc__ = "A single native Maze environment (numpy in and out).\n" + _DOC_COMMON

    config_class = MazeConfig
    core_class = MazeCore


class MazeVectorEnv(CoreVectorEnv):
    __doc__ = (
        "``num_envs`` native Maze environments stepped as one batch (numpy in and out).\n\n"
        "    Autoreset follows Gymnasium's NEXT_STEP convention.  Environment ``i`` of\n"
        "    ``reset(seed=s)`` plays the same levels as a single env reset with ``s + i``.\n"
        "    The torch core is ``self.core``.\n" + _DOC_COMMON
    )

    config_class = MazeConfig
    core_class = MazeCore
