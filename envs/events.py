"""The events every game of the family reports, and where each game's infos hold them.

A game of the family has a *goal* (the reward: CoinRun's coin), a *proxy* the goal sits
at in training levels (CoinRun's end of the level), and a fraction of levels in which the
goal is moved away from the proxy.  Its infos report, per environment, the same six
events under the game's own key names:

* ``goal``: the goal was reached this step (the episode ends with the reward);
* ``proxy``: the proxy was reached at some point this episode;
* ``moved``: this level's goal was moved away from the proxy;
* ``died`` and ``timed_out``: the episode ended without the goal, by death or step limit;
* ``level_seed``: the level being played.

``GAME_EVENTS[game]`` names the keys of one game; :func:`family_events` reads any game's
infos (numpy arrays, tensors, or one environment's scalars) into the family's own names
(``FAMILY_KEYS``), so evaluation code never spells a game's keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import astuple, dataclass
from typing import Any


@dataclass(frozen=True)
class EventKeys:
    """The info keys under which one game reports the family's events."""

    goal: str
    proxy: str
    moved: str
    died: str = "died"
    timed_out: str = "timed_out"
    level_seed: str = "level_seed"

    def keys(self) -> tuple[str, ...]:
        """The game's info keys, in the order of ``FAMILY_KEYS``."""
        return astuple(self)


# The family's names for the events (the fields of EventKeys, goal first).
GOAL_REACHED = "goal_reached"
PROXY_REACHED = "proxy_reached"
GOAL_MOVED = "goal_moved"
DIED = "died"
TIMED_OUT = "timed_out"
LEVEL_SEED = "level_seed"
FAMILY_KEYS = (GOAL_REACHED, PROXY_REACHED, GOAL_MOVED, DIED, TIMED_OUT, LEVEL_SEED)

COINRUN_EVENTS = EventKeys(goal="coin_collected", proxy="reached_end", moved="coin_randomized")
# Maze: the cheese; the proxy is entering the top-right corner region (sticky); no deaths.
MAZE_EVENTS = EventKeys(goal="cheese_collected", proxy="reached_corner", moved="cheese_moved")

GAME_EVENTS: dict[str, EventKeys] = {"coinrun": COINRUN_EVENTS, "maze": MAZE_EVENTS}


def events_of(game: str) -> EventKeys:
    """The event keys of ``game`` (a key of ``GAME_EVENTS``)."""
    try:
        return GAME_EVENTS[game]
    except KeyError:
        raise ValueError(
            f"game={game!r} is invalid; accepted values are {tuple(GAME_EVENTS)}"
        ) from None


def family_events(info: Mapping[str, Any], game: str | EventKeys = "coinrun") -> dict[str, Any]:
    """The family's six events from one game's ``info`` (values passed through as they
    are: arrays, tensors or scalars), keyed by ``FAMILY_KEYS``."""
    keys = game if isinstance(game, EventKeys) else events_of(game)
    return {family: info[own] for family, own in zip(FAMILY_KEYS, keys.keys())}
