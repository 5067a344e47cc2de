"""CoinRun's Gymnasium facades: the family's facades (``envs/gym_env.py``) over
``CoinRunCore``, with CoinRun's documentation."""

from __future__ import annotations

from ..gym_env import CoreEnv, CoreVectorEnv
from .config import CoinRunConfig
from .core import CoinRunCore

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


class CoinRunEnv(CoreEnv):
    __doc__ = "A single native CoinRun environment (numpy in and out).\n" + _DOC_COMMON

    config_class = CoinRunConfig
    core_class = CoinRunCore


class CoinRunVectorEnv(CoreVectorEnv):
    __doc__ = (
        "``num_envs`` native CoinRun environments stepped as one batch (numpy in and out).\n\n"
        "    Autoreset follows Gymnasium's NEXT_STEP convention.  Environment ``i`` of\n"
        "    ``reset(seed=s)`` plays the same levels as a single env reset with ``s + i``.\n"
        "    The torch core is ``self.core``.\n" + _DOC_COMMON
    )

    config_class = CoinRunConfig
    core_class = CoinRunCore
