"""Validated configuration of a CoinRun environment family member.

One frozen dataclass holds every argument the environments accept, so the torch core,
the Gymnasium facades and (later) checkpoints share one definition and one set of error
messages.  Every invalid value raises ``ValueError`` naming the parameter, the value and
what is accepted.
"""

from __future__ import annotations

import math
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
from .levels import COIN_PLACEMENTS
from .state import DEFAULT_MAX_EPISODE_STEPS


@dataclass(frozen=True)
class CoinRunConfig:
    """Arguments of ``coinrun_mg/CoinRun-v0`` (see ``CoinRunEnv`` for their meaning)."""

    obs_mode: str = "symbolic"
    view_size: int = 13
    distribution_mode: str = "hard"
    num_levels: int = 0
    start_level: int = 0
    rand_fraction: float = 0.0
    coin_placement: str = "section"
    coin_region: tuple[float, float] = (0.0, 1.0)
    end_terminates: bool = False
    max_episode_steps: int = DEFAULT_MAX_EPISODE_STEPS

    def __post_init__(self) -> None:
        one_of("obs_mode", self.obs_mode, OBS_MODES)
        one_of("distribution_mode", self.distribution_mode, DISTRIBUTION_MODES)
        one_of("coin_placement", self.coin_placement, COIN_PLACEMENTS)
        ints_at_least(self, num_levels=0, start_level=0, max_episode_steps=1, view_size=3)
        if self.view_size % 2 == 0:
            raise ValueError(f"view_size={self.view_size!r} is invalid; it must be an odd int >= 3")
        level_seeds_below_2_31(self.start_level, self.num_levels)
        fraction = unit_fraction(
            "rand_fraction", self.rand_fraction, "e.g. 0.02 moves the coin in 2% of levels"
        )
        object.__setattr__(self, "rand_fraction", fraction)
        region = self.coin_region
        try:
            lo, hi = (float(v) for v in region)
        except (TypeError, ValueError):
            raise ValueError(
                f"coin_region={region!r} is invalid; it must be a pair (lo, hi) of fractions "
                "of the level length with 0 <= lo < hi <= 1"
            ) from None
        if not (0.0 <= lo < hi <= 1.0) or math.isnan(lo) or math.isnan(hi):
            raise ValueError(
                f"coin_region={region!r} is invalid; it must satisfy 0 <= lo < hi <= 1 "
                "(e.g. (0.8, 1.0) for the right 20% of the level)"
            )
        object.__setattr__(self, "coin_region", (lo, hi))
        true_or_false("end_terminates", self.end_terminates)

    @property
    def hard(self) -> bool:
        return self.distribution_mode == "hard"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["coin_region"] = list(self.coin_region)
        return d
