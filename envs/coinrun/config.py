"""Validated configuration of a CoinRun environment family member.

One frozen dataclass holds every argument the environments accept, so the torch core,
the Gymnasium facades and (later) checkpoints share one definition and one set of error
messages.  Every invalid value raises ``ValueError`` naming the parameter, the value and
what is accepted.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from ..checks import int_at_least, one_of
from .levels import COIN_PLACEMENTS
from .state import DEFAULT_MAX_EPISODE_STEPS

OBS_MODES = ("symbolic", "pixels")
DISTRIBUTION_MODES = ("easy", "hard")


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
        int_at_least("num_levels", self.num_levels, 0)
        int_at_least("start_level", self.start_level, 0)
        int_at_least("max_episode_steps", self.max_episode_steps, 1)
        int_at_least("view_size", self.view_size, 3)
        if self.view_size % 2 == 0:
            raise ValueError(f"view_size={self.view_size!r} is invalid; it must be an odd int >= 3")
        if self.num_levels and self.start_level + self.num_levels > 2**31:
            raise ValueError(
                f"start_level + num_levels = {self.start_level + self.num_levels} is invalid; "
                "level seeds must stay below 2**31"
            )
        f = self.rand_fraction
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0.0 <= f <= 1.0:
            raise ValueError(
                f"rand_fraction={f!r} is invalid; it must be a float in [0, 1] "
                "(e.g. 0.02 moves the coin in 2% of levels)"
            )
        object.__setattr__(self, "rand_fraction", float(f))
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
        if not isinstance(self.end_terminates, bool):
            raise ValueError(
                f"end_terminates={self.end_terminates!r} is invalid; use True or False"
            )

    @property
    def hard(self) -> bool:
        return self.distribution_mode == "hard"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["coin_region"] = list(self.coin_region)
        return d
