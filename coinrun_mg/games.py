"""The family's games as the evaluation sees them: one :class:`Game` record per game.

A record names the game's Gymnasium ids (native torch core and procgen backend), its
config and core classes, its event keys (``envs/events.py``), the test configuration
(goal moved on every level, the episode ends at the proxy) and the training one (the
proxy does not end the episode), the columns of a per-episode row and the name of the
level filter (CoinRun's "good levels", Maze's "decision levels").
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from coinrun_mg import COINRUN_ENV_ID, MAZE_ENV_ID, PROCGEN_COINRUN_ENV_ID, PROCGEN_MAZE_ENV_ID
from coinrun_mg.envs.events import COINRUN_EVENTS, MAZE_EVENTS, EventKeys


@dataclass(frozen=True)
class Game:
    """What the evaluation needs to know of one game."""

    name: str
    native_id: str
    procgen_id: str
    events: EventKeys
    proxy_terminates: str  # the config field that ends an episode at the proxy
    values: tuple[str, ...]  # int info keys copied into each row, after the outcome
    level_flags: tuple[str, ...]  # bool info keys copied into each row, last
    filter_label: str  # the levels the filtered sub-report keeps

    @property
    def test_defaults(self) -> dict[str, Any]:
        """The test configuration: every goal moved, the proxy ends the episode."""
        return {"rand_fraction": 1.0, self.proxy_terminates: True}

    @property
    def ids(self) -> tuple[str, str]:
        return (self.native_id, self.procgen_id)

    @property
    def columns(self) -> tuple[str, ...]:
        """A per-episode row's columns, in CSV order."""
        e = self.events
        flags = (e.moved, e.goal, e.proxy, e.died, e.timed_out)
        return ("level_seed", "steps", *flags, "outcome", *self.values, *self.level_flags)

    def config_class(self) -> type:
        if self.name == "maze":
            from coinrun_mg.envs.maze import MazeConfig

            return MazeConfig
        from coinrun_mg.envs import CoinRunConfig

        return CoinRunConfig

    def check_settings(self, kwargs: dict[str, Any], extra: tuple[str, ...] = ()) -> None:
        """Refuse a name in ``kwargs`` that is not a field of the game's config (nor in
        ``extra``), naming the value and the accepted names."""
        accepted = sorted({f.name for f in dataclasses.fields(self.config_class())} | set(extra))
        for name in kwargs:
            if name not in accepted:
                raise ValueError(
                    f"{name}={kwargs[name]!r} is not a {self.name} setting; accepted: "
                    + ", ".join(accepted)
                )

    def config(self, **kwargs: Any):
        """The game's config dataclass built from ``kwargs`` (an unknown name is refused
        with the accepted ones)."""
        self.check_settings(kwargs)
        return self.config_class()(**kwargs)

    def core(self, num_envs: int, config, device):
        """The game's torch core for an evaluation (no autoreset, actions unchecked)."""
        from coinrun_mg.envs import resolve_device
        from coinrun_mg.envs.coinrun.memory import check_num_envs, observation_bytes

        options = {"device": device, "autoreset": "disabled", "check_actions": False}
        if self.name == "maze":
            from coinrun_mg.envs.maze import SYMBOLIC_CHANNELS, MazeCore

            if config.obs_mode == "symbolic":
                obs_bytes = config.symbolic_side**2 * SYMBOLIC_CHANNELS
            else:
                obs_bytes = observation_bytes("pixels")
            # Refuse before allocating, on CoinRun's per-level estimate (a Maze level is
            # smaller): it only catches a num_envs far beyond the device's memory.
            check_num_envs(num_envs, obs_bytes, resolve_device(device))
            return MazeCore(num_envs, config, **options)
        from coinrun_mg.envs import CoinRunCore

        obs_bytes = observation_bytes(config.obs_mode, config.view_size)
        check_num_envs(num_envs, obs_bytes, resolve_device(device))  # refuse before allocating
        return CoinRunCore(num_envs, config, **options)


COINRUN = Game(
    name="coinrun",
    native_id=COINRUN_ENV_ID,
    procgen_id=PROCGEN_COINRUN_ENV_ID,
    events=COINRUN_EVENTS,
    proxy_terminates="end_terminates",
    values=("coin_x", "end_x"),
    level_flags=(),
    filter_label="good levels",
)
MAZE = Game(
    name="maze",
    native_id=MAZE_ENV_ID,
    procgen_id=PROCGEN_MAZE_ENV_ID,
    events=MAZE_EVENTS,
    proxy_terminates="corner_terminates",
    values=("cheese_x", "cheese_y"),
    level_flags=("decision_level",),
    filter_label="decision levels",
)
GAMES: dict[str, Game] = {"coinrun": COINRUN, "maze": MAZE}
#: The trainer's name for CoinRun's torch core.
NATIVE_ALIAS = "native"


def game_of_env(env_id: str) -> Game | None:
    """The game an env id belongs to (``"native"`` is CoinRun's core), None for others."""
    if env_id == NATIVE_ALIAS:
        return COINRUN
    for game in GAMES.values():
        if env_id in game.ids:
            return game
    return None


#: The backends a command line names: each game's torch core or its procgen game.
BACKENDS = ("native", "procgen")


def backend_env_id(backend: str, trained_env_id: str | None) -> str:
    """The env id of ``backend`` for the game a policy was trained on (its ``env_id``;
    CoinRun when it names none or another env): ``"native"`` gives the torch core's id,
    ``"procgen"`` the procgen backend's."""
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is invalid; accepted values are {BACKENDS}")
    game = (game_of_env(trained_env_id) if trained_env_id else None) or COINRUN
    return game.native_id if backend == "native" else game.procgen_id


def game_of_config(config) -> Game:
    """The game of a config dataclass (a ``MazeConfig`` is Maze's, else CoinRun's)."""
    from coinrun_mg.envs.maze import MazeConfig

    return MAZE if isinstance(config, MazeConfig) else COINRUN
