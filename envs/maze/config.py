"""Validated configuration of a Maze environment (native and procgen backends).

One frozen dataclass holds every argument the Maze environments accept, worded like
:class:`~coinrun_mg.envs.coinrun.CoinRunConfig` where a field means the same thing.
Every invalid value raises ``ValueError`` naming the parameter, the value and what is
accepted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..checks import (
    DISTRIBUTION_MODES,
    OBS_MODES,
    ints_at_least,
    level_seeds_below_2_31,
    one_of,
    true_or_false,
    unit_fraction,
)

# procgen's world side per distribution mode; the maze sits centred in it.
WORLD_DIM = {"easy": 15, "hard": 25}
DEFAULT_MAX_EPISODE_STEPS = 500


@dataclass(frozen=True)
class MazeConfig:
    """Arguments of ``coinrun_mg/Maze-v0`` and ``coinrun_mg/ProcgenMaze-v0``.

    ``corner_size`` k: in training levels the cheese sits in a uniformly chosen open cell
    of the maze's top-right k x k region (k = 1: procgenAISC's ``maze_aisc``, the cheese in
    the top-right cell); k larger than a level's maze covers the whole maze.
    ``rand_fraction``: the share of levels whose cheese is placed as stock procgen places
    it (uniformly among the open cells but the start). ``corner_terminates``: end the
    episode when the agent enters the corner region while the cheese lies outside it (for
    evaluation; the same rule on both backends). ``view_size``: 0 (the default) shows the
    whole world as procgen does; an odd side >= 3 makes the symbolic view agent-centred,
    that many cells across, cells outside the world shown as wall (``2 * world_dim - 1``
    keeps the whole world in view wherever the agent stands).
    """

    obs_mode: str = "symbolic"
    distribution_mode: str = "hard"
    num_levels: int = 0
    start_level: int = 0
    rand_fraction: float = 0.0
    corner_size: int = 1
    corner_terminates: bool = False
    max_episode_steps: int = DEFAULT_MAX_EPISODE_STEPS
    view_size: int = 0

    def __post_init__(self) -> None:
        one_of("obs_mode", self.obs_mode, OBS_MODES)
        one_of("distribution_mode", self.distribution_mode, DISTRIBUTION_MODES)
        ints_at_least(
            self, num_levels=0, start_level=0, max_episode_steps=1, corner_size=1, view_size=0
        )
        if self.view_size and (self.view_size < 3 or self.view_size % 2 == 0):
            raise ValueError(
                f"view_size={self.view_size!r} is invalid; it must be 0 (the whole world) "
                "or an odd int >= 3 (an agent-centred view)"
            )
        if self.view_size and self.obs_mode != "symbolic":
            raise ValueError(
                f"view_size={self.view_size!r} is invalid with obs_mode={self.obs_mode!r}: "
                "it sizes the symbolic view; leave it at 0 or use obs_mode='symbolic'"
            )
        level_seeds_below_2_31(self.start_level, self.num_levels)
        fraction = unit_fraction(
            "rand_fraction",
            self.rand_fraction,
            "e.g. 0.02 places the cheese anywhere in 2% of levels",
        )
        object.__setattr__(self, "rand_fraction", fraction)
        true_or_false("corner_terminates", self.corner_terminates)

    @property
    def world_dim(self) -> int:
        """Side of the world grid in cells (15 easy, 25 hard)."""
        return WORLD_DIM[self.distribution_mode]

    @property
    def symbolic_side(self) -> int:
        """Side of the symbolic observation: ``view_size``, or the world's when 0."""
        return self.view_size or self.world_dim

    def to_dict(self) -> dict:
        return asdict(self)
