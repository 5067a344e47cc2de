"""PPO configuration: one frozen dataclass, its validation and the named profiles.

``PPOConfig()`` holds the Procgen / Langosco et al. (2022) PPO hyperparameters (IMPALA CNN,
64 envs x 256 steps, minibatch 8192, gamma 0.999, ...); its environment fields take their
defaults from :class:`~coinrun_mg.envs.CoinRunConfig`, the one source of them.  Named
profiles change a few fields:

* ``paper`` -- the defaults on 64x64 pixels, as the paper trained: a GPU workload.  The
  paper trained for 80M-200M steps; Procgen's easy budget is 25M.
* ``quick`` -- what a CPU can train in minutes: the 13x13 symbolic view, easy mode, the
  MLP trunk, 512 envs x 64 steps, 16 minibatches, gamma 0.999, 10M steps.  Its learning
  curve and the choices behind it are in docs/results.md.

``curriculum`` chooses how levels are drawn: ``'dr'`` (every episode a new level) or
``'plr'`` (robust prioritized level replay, ``agents/level_replay.py``, set by the
``plr_*`` fields, which are refused away from their defaults under ``'dr'``).

Every field has a ``help`` text in its metadata; the ``coinrun-mg train`` command builds
its ``--field-name`` options from them.  Invalid values raise ``ValueError`` naming the
field, the value and what is accepted.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import typing
from dataclasses import dataclass, field
from typing import Any

from coinrun_mg.envs.coinrun.config import DISTRIBUTION_MODES, OBS_MODES, CoinRunConfig
from coinrun_mg.envs.coinrun.levels import COIN_PLACEMENTS
from coinrun_mg.envs.compile import COMPILE_WORDS

from .networks import NETWORKS

NATIVE_ENV = "native"

# Fields a resumed run may change: they steer bookkeeping, not the learning itself
# (``total_steps`` does move the learning-rate schedule: a longer run is a different run
# from then on, which is the point of extending it).
RESUMABLE_FIELDS = frozenset(
    {
        "total_steps",
        "device",
        "torch_threads",
        "compile_env",
        "checkpoint_every",
        "keep_checkpoints",
        "eval_every",
        "progress_bar",
    }
)

GAMES = ("coinrun", "maze")
# Each game's default episode step limit (procgen's: CoinRun 1000, Maze 500).
DEFAULT_EPISODE_STEPS = {"coinrun": 1000, "maze": 500}
# The registered Gymnasium ids of each game: a run's env_id must be its game's.
GAME_ENV_IDS = {
    "coinrun": ("coinrun_mg/CoinRun-v0", "coinrun_mg/ProcgenCoinRun-v0"),
    "maze": ("coinrun_mg/Maze-v0", "coinrun_mg/ProcgenMaze-v0"),
}
# Fields that become Maze environment kwargs (``MazeConfig``).
MAZE_ENV_FIELDS = (
    "rand_fraction",
    "corner_size",
    "num_levels",
    "start_level",
    "obs_mode",
    "distribution_mode",
    "max_episode_steps",
    "maze_view_size",
)
# PPOConfig fields whose Maze kwarg has another name (``view_size`` is CoinRun's field).
MAZE_ENV_NAMES = {"maze_view_size": "view_size"}

# Fields that become CoinRun environment kwargs (``CoinRunConfig``).
ENV_FIELDS = (
    "rand_fraction",
    "coin_placement",
    "coin_region",
    "num_levels",
    "start_level",
    "obs_mode",
    "distribution_mode",
    "view_size",
    "max_episode_steps",
)

# Level curricula (agents/level_replay.py): domain randomization (every episode a new level
# of the training distribution) or robust prioritized level replay (PLR-perp).
CURRICULA = ("dr", "plr")
PLR_SCORES = ("pvl", "maxmc", "oracle")
PLR_PRIORITIZATIONS = ("rank", "power")
# The level-replay fields: set away from their defaults only with curriculum='plr'.
PLR_FIELDS = (
    "plr_buffer_size",
    "plr_replay_prob",
    "plr_min_fill",
    "plr_staleness_coef",
    "plr_prioritization",
    "plr_temperature",
    "plr_score",
)

# Fields whose values come from a fixed list (the CLI turns them into `choices`).
CHOICES: dict[str, tuple[str, ...]] = {
    "game": GAMES,
    "coin_placement": COIN_PLACEMENTS,
    "obs_mode": OBS_MODES,
    "distribution_mode": DISTRIBUTION_MODES,
    "network": NETWORKS,
    "compile_env": tuple(COMPILE_WORDS),
    "curriculum": CURRICULA,
    "plr_score": PLR_SCORES,
    "plr_prioritization": PLR_PRIORITIZATIONS,
}


def _f(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


def _env_field(name: str, help: str) -> Any:
    """An environment field, with ``CoinRunConfig``'s default (the one source of it)."""
    return _f(CoinRunConfig.__dataclass_fields__[name].default, help)


@dataclass(frozen=True)
class PPOConfig:
    """Everything a PPO run depends on.  Defaults: the Procgen paper's settings."""

    # --- run ---------------------------------------------------------------------------
    seed: int = _f(1, "seed of the network init, the action sampling and the env level keys")
    device: str = _f("auto", "'auto' (CUDA when available), 'cpu', 'cuda' or 'cuda:N'")
    total_steps: int = _f(
        25_000_000, "environment steps to train for (rounded up to whole iterations)"
    )
    torch_threads: int = _f(0, "torch CPU threads (0: leave torch's default)")
    compile_env: str = _f(
        "auto",
        "torch.compile the native env's step: 'auto' (on CUDA only), 'on' or 'off'; "
        "the first step compiles (about a minute, cached on disk)",
    )

    # --- environment -------------------------------------------------------------------
    game: str = _f("coinrun", "the game: 'coinrun' or 'maze' (the cheese in the corner)")
    env_id: str = _f(
        NATIVE_ENV,
        "'native': the game's batched torch core, stepped on the device; or a Gymnasium "
        "vector env id (e.g. coinrun_mg/ProcgenCoinRun-v0) made with gymnasium.make_vec",
    )
    rand_fraction: float = _env_field(
        "rand_fraction", "fraction of training levels whose goal (coin, cheese) is moved"
    )
    corner_size: int = _f(1, "Maze: side of the top-right region holding a training cheese")
    coin_placement: str = _env_field("coin_placement", "how a moved coin is placed")
    coin_region: tuple[float, float] = _env_field(
        "coin_region", "(lo, hi) fractions of the level length where a moved coin may go"
    )
    num_levels: int = _env_field("num_levels", "number of distinct training levels (0: unlimited)")
    start_level: int = _env_field("start_level", "first level seed")
    obs_mode: str = _env_field("obs_mode", "observation: 64x64 RGB pixels or the symbolic view")
    distribution_mode: str = _env_field("distribution_mode", "procgen distribution mode")
    view_size: int = _env_field("view_size", "side of the symbolic view in tiles (odd)")
    maze_view_size: int = _f(
        0,
        "Maze: side of the agent-centred symbolic view (odd; 2 * world side - 1 keeps the "
        "whole world in view); 0: the whole world, not agent-centred",
    )
    # None: the game's own limit (DEFAULT_EPISODE_STEPS), set by __post_init__.
    max_episode_steps: int = _f(
        None, "episode step limit (default: the game's, 1000 CoinRun, 500 Maze)"
    )

    # --- network -----------------------------------------------------------------------
    network: str = _f(
        "impala", "IMPALA CNN (pixels), the compact or grid CNN or the MLP (symbolic view)"
    )
    impala_scale: int = _f(1, "channel multiplier of the IMPALA CNN (the paper also used 4)")
    grid_scale: int = _f(1, "channel multiplier of the grid CNN (16 and 32 channels at 1)")

    # --- PPO ---------------------------------------------------------------------------
    num_envs: int = _f(64, "parallel environments")
    num_steps: int = _f(256, "steps per environment per rollout")
    learning_rate: float = _f(5e-4, "Adam learning rate")
    anneal_lr: bool = _f(True, "decay the learning rate linearly to 0")
    adam_eps: float = _f(1e-5, "Adam epsilon")
    gamma: float = _f(0.999, "discount factor")
    gae_lambda: float = _f(0.95, "GAE lambda")
    update_epochs: int = _f(3, "passes over each rollout")
    minibatch_size: int = _f(8192, "transitions per minibatch (must divide envs x steps)")
    norm_adv: bool = _f(True, "normalize advantages per minibatch")
    clip_coef: float = _f(0.2, "PPO clipping coefficient (policy and value)")
    clip_vloss: bool = _f(True, "clip the value loss as in the PPO paper's code")
    ent_coef: float = _f(0.01, "entropy bonus coefficient")
    vf_coef: float = _f(0.5, "value loss coefficient")
    max_grad_norm: float = _f(0.5, "gradient-norm clipping threshold")
    norm_reward: bool = _f(True, "divide rewards by the running std of discounted returns")
    reward_clip: float = _f(10.0, "clip normalized rewards to [-reward_clip, reward_clip]")

    # --- curriculum (agents/level_replay.py) --------------------------------------------
    # Defaults: robust PLR with the positive value loss as in Jiang et al. (2021)'s
    # MiniGrid runs (facebookresearch/dcd configs): buffer 4000, rank with temperature
    # 0.3, staleness 0.3, replay probability 0.5 once the buffer is half full.
    curriculum: str = _f(
        "dr",
        "'dr': every episode a new level of the training distribution (domain "
        "randomization); 'plr': robust prioritized level replay (PLR-perp)",
    )
    plr_buffer_size: int = _f(4000, "PLR: level seeds kept in the replay buffer")
    plr_replay_prob: float = _f(
        0.5, "PLR: probability that an episode replays a buffer level instead of a new one"
    )
    plr_min_fill: float = _f(
        0.5, "PLR: share of the buffer that must be filled before any level is replayed"
    )
    plr_staleness_coef: float = _f(
        0.3, "PLR: weight of staleness in the replay distribution (rho of the paper)"
    )
    plr_prioritization: str = _f(
        "rank", "PLR: score transform, 'rank' (1/rank) or 'power' (the score itself)"
    )
    plr_temperature: float = _f(0.3, "PLR: temperature beta of the score transform")
    plr_score: str = _f(
        "pvl",
        "PLR: level score, 'pvl' (positive value loss), 'maxmc' (best return seen minus "
        "the value) or 'oracle' (the solver's best return minus the episode's)",
    )

    # --- logging and checkpoints ------------------------------------------------------
    checkpoint_every: int = _f(
        1_000_000, "environment steps between checkpoints (0: only the final one)"
    )
    keep_checkpoints: bool = _f(
        False, "also keep every periodic checkpoint as checkpoints/step_<N>.pt"
    )
    eval_every: int = _f(
        0, "environment steps between calls of training hooks without their own interval"
    )
    progress_bar: bool = _f(True, "show a tqdm progress bar (only on a terminal)")

    def __post_init__(self) -> None:
        if self.game not in GAMES:  # before the game's defaults are looked up
            raise ValueError(f"game={self.game!r} is invalid; accepted values are {GAMES}")
        if self.max_episode_steps is None:
            object.__setattr__(self, "max_episode_steps", DEFAULT_EPISODE_STEPS[self.game])
        for f in dataclasses.fields(self):
            value = _checked(f.name, getattr(self, f.name), _field_types()[f.name])
            object.__setattr__(self, f.name, value)
        object.__setattr__(self, "coin_region", tuple(float(v) for v in self.coin_region))
        for name in ("learning_rate", "adam_eps", "gamma", "clip_coef", "max_grad_norm"):
            _positive(name, getattr(self, name))
        for name in ("ent_coef", "vf_coef", "gae_lambda"):
            _non_negative(name, getattr(self, name))
        _positive("reward_clip", self.reward_clip)
        for name in ("gamma", "gae_lambda"):
            if getattr(self, name) > 1:
                raise ValueError(f"{name}={getattr(self, name)!r} is invalid; it must be in [0, 1]")
        for name in ("total_steps", "num_envs", "num_steps", "update_epochs", "minibatch_size"):
            _int_at_least(name, getattr(self, name), 1)
        for name in ("checkpoint_every", "eval_every", "torch_threads", "seed"):
            _int_at_least(name, getattr(self, name), 0)
        _int_at_least("impala_scale", self.impala_scale, 1)
        _int_at_least("grid_scale", self.grid_scale, 1)
        for name, accepted in CHOICES.items():
            if getattr(self, name) not in accepted:
                raise ValueError(
                    f"{name}={getattr(self, name)!r} is invalid; accepted values are {accepted}"
                )
        if self.batch_size % self.minibatch_size != 0:
            raise ValueError(
                f"minibatch_size={self.minibatch_size!r} is invalid; it must divide "
                f"num_envs * num_steps = {self.num_envs} * {self.num_steps} = "
                f"{self.batch_size} (e.g. {self.batch_size // 8} for 8 minibatches)"
            )
        _check_device(self.device)
        if not self.env_id:
            raise ValueError(
                f"env_id={self.env_id!r} is invalid; use 'native' or a Gymnasium env id"
            )
        if self.game == "maze" and self.network == "mlp" and self.obs_mode != "symbolic":
            raise ValueError(
                "network='mlp' is invalid with obs_mode='pixels'; the mlp reads the symbolic "
                "view: use obs_mode='symbolic', or network='impala' for pixels"
            )
        self._check_game_fields()
        self._check_curriculum()
        self.env_config()  # raises ValueError naming the bad env field

    def _check_game_fields(self) -> None:
        """Refuse an env field of the other game set away from its default (it would be
        ignored), and a registered env id of the other game."""
        own = MAZE_ENV_FIELDS if self.game == "maze" else ENV_FIELDS
        for name in (*ENV_FIELDS, *MAZE_ENV_FIELDS):
            default = PPOConfig.__dataclass_fields__[name].default
            if name not in own and getattr(self, name) != default:
                raise ValueError(
                    f"{name}={getattr(self, name)!r} is invalid with game={self.game!r}: "
                    f"{self.game} has no {name}; leave it at its default {default!r} (the "
                    f"{self.game} environment fields are {list(own)})"
                )
        for game, ids in GAME_ENV_IDS.items():
            if self.env_id in ids and game != self.game:
                raise ValueError(
                    f"env_id={self.env_id!r} is invalid with game={self.game!r}: it is a "
                    f"{game} environment; use game={game!r}, or env_id 'native' or one of "
                    f"{list(GAME_ENV_IDS[self.game])}"
                )

    def _check_curriculum(self) -> None:
        """Refuse PLR settings out of range, PLR fields changed under 'dr' (they would be
        ignored) and PLR on a Gymnasium env (it starts levels in the native core)."""
        _int_at_least("plr_buffer_size", self.plr_buffer_size, 1)
        _positive("plr_temperature", self.plr_temperature)
        for name in ("plr_replay_prob", "plr_min_fill", "plr_staleness_coef"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name}={getattr(self, name)!r} is invalid; it must be in [0, 1]")
        if self.curriculum == "dr":
            for name in PLR_FIELDS:
                default = PPOConfig.__dataclass_fields__[name].default
                if getattr(self, name) != default:
                    raise ValueError(
                        f"{name}={getattr(self, name)!r} is invalid with curriculum='dr': "
                        f"only 'plr' reads it; use curriculum='plr' or leave it at {default!r}"
                    )
        elif self.env_id != NATIVE_ENV:
            raise ValueError(
                f"curriculum={self.curriculum!r} is invalid with env_id={self.env_id!r}: level "
                "replay starts levels in the native core; use env_id='native' or curriculum='dr'"
            )

    # --- derived quantities ----------------------------------------------------------
    @property
    def batch_size(self) -> int:
        """Transitions per rollout (``num_envs * num_steps``)."""
        return self.num_envs * self.num_steps

    @property
    def network_scale(self) -> int:
        """The channel multiplier of the chosen network (1 for those without one)."""
        return {"impala": self.impala_scale, "grid": self.grid_scale}.get(self.network, 1)

    @property
    def num_minibatches(self) -> int:
        return self.batch_size // self.minibatch_size

    @property
    def num_iterations(self) -> int:
        """Rollout + update cycles: ``total_steps / batch_size`` rounded up."""
        return math.ceil(self.total_steps / self.batch_size)

    def env_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the game's environment (``CoinRunConfig`` or ``MazeConfig``
        fields).

        ``view_size`` only sizes CoinRun's symbolic observations and is left out for
        pixels (the procgen backend refuses it); Maze's ``view_size`` is
        ``maze_view_size``.
        """
        if self.game == "maze":
            return {MAZE_ENV_NAMES.get(name, name): getattr(self, name) for name in MAZE_ENV_FIELDS}
        kwargs = {name: getattr(self, name) for name in ENV_FIELDS}
        if self.obs_mode != "symbolic":
            del kwargs["view_size"]
        return kwargs

    def env_config(self):
        """The game's environment config (``CoinRunConfig`` or ``MazeConfig``)."""
        if self.game == "maze":
            from coinrun_mg.envs.maze.config import MazeConfig

            return MazeConfig(**self.env_kwargs())
        return CoinRunConfig(**self.env_kwargs())

    # --- construction and serialization -------------------------------------------
    @classmethod
    def from_profile(cls, profile: str = "paper", **overrides: Any) -> PPOConfig:
        """The named profile (see :data:`PROFILES`) with ``overrides`` applied."""
        if profile not in PROFILES:
            raise ValueError(
                f"profile={profile!r} is invalid; accepted values are {tuple(PROFILES)}"
            )
        _check_names(overrides)
        game = overrides.get("game", "coinrun")
        values = GAME_PROFILES.get(game, PROFILES)[profile]
        return cls(**{**values, **overrides})

    def replace(self, **changes: Any) -> PPOConfig:
        """A copy with ``changes`` applied (validated like a new config)."""
        _check_names(changes)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (tuples become lists)."""
        d = dataclasses.asdict(self)
        d["coin_region"] = list(self.coin_region)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PPOConfig:
        _check_names(d)
        d = dict(d)
        if "coin_region" in d:
            d["coin_region"] = tuple(d["coin_region"])
        return cls(**d)

    def differences(self, other: PPOConfig) -> dict[str, tuple[Any, Any]]:
        """``{field: (self's value, other's value)}`` for every field that differs."""
        mine, theirs = self.to_dict(), other.to_dict()
        return {k: (mine[k], theirs[k]) for k in mine if mine[k] != theirs[k]}


PROFILES: dict[str, dict[str, Any]] = {
    "paper": {"obs_mode": "pixels"},
    "quick": {
        "obs_mode": "symbolic",
        "distribution_mode": "easy",
        "network": "mlp",
        "num_envs": 512,
        "num_steps": 64,
        "minibatch_size": 2048,  # 16 minibatches
        "gamma": 0.999,
        "total_steps": 10_000_000,
        "checkpoint_every": 500_000,
    },
}


# Each game's profiles (CoinRun's are PROFILES); ``from_profile(name, game=...)`` picks.
GAME_PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    "coinrun": PROFILES,
    "maze": {
        "paper": {"game": "maze", "obs_mode": "pixels"},
        # What a CPU trains in minutes: the easy world as symbolic planes in a window centred
        # on the agent (2 x 15 - 1 cells: all of it, from anywhere), the small grid CNN.
        # 128 envs and 16 minibatches: four times the gradient steps per environment step of
        # 256 envs and 8, for about the same cost per step; it learns faster per step.
        "quick": {
            "game": "maze",
            "obs_mode": "symbolic",
            "distribution_mode": "easy",
            "maze_view_size": 29,
            "network": "grid",
            "num_envs": 128,
            "num_steps": 64,
            "minibatch_size": 512,  # 16 minibatches
            "gamma": 0.99,
            "total_steps": 5_000_000,
            "checkpoint_every": 500_000,
        },
    },
}


# --- validation helpers -------------------------------------------------------------------


@functools.cache
def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(PPOConfig)


def field_names() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(PPOConfig))


def _check_names(values: dict[str, Any]) -> None:
    unknown = sorted(set(values) - set(field_names()))
    if unknown:
        raise ValueError(
            f"unknown PPOConfig field(s) {unknown}; accepted fields are {list(field_names())}"
        )


def _checked(name: str, value: Any, expected: Any) -> Any:
    """``value`` if it has its field's type; numpy numbers (e.g. from a sweep grid) become
    the Python int or float they stand for, so that configs serialize."""

    def number(v: Any) -> bool:
        return isinstance(v, numbers.Real) and not isinstance(v, bool)

    if expected is bool:
        ok = isinstance(value, bool)
        what = "True or False"
    elif expected is int:
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        value = int(value) if ok else value
        what = "an int"
    elif expected is float:
        ok = number(value)
        value = value if not ok or isinstance(value, (int, float)) else float(value)
        what = "a number"
    elif expected is str:
        ok = isinstance(value, str)
        what = "a string"
    else:  # tuple[float, float]
        ok = isinstance(value, (tuple, list)) and len(value) == 2 and all(map(number, value))
        what = "a pair of numbers"
    if not ok:
        raise ValueError(f"{name}={value!r} is invalid; it must be {what}")
    if expected is float and not math.isfinite(value):
        raise ValueError(f"{name}={value!r} is invalid; it must be a finite number")
    return value


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name}={value!r} is invalid; it must be > 0")


def _non_negative(name: str, value: float) -> None:
    if not value >= 0:
        raise ValueError(f"{name}={value!r} is invalid; it must be >= 0")


def _int_at_least(name: str, value: int, minimum: int) -> None:
    if value < minimum:
        raise ValueError(f"{name}={value!r} is invalid; it must be an int >= {minimum}")


def _check_device(device: str) -> None:
    ok = device in ("auto", "cpu", "cuda")
    if device.startswith("cuda:"):
        ok = device[5:].isdigit()
    if not ok:
        raise ValueError(f"device={device!r} is invalid; use 'auto', 'cpu', 'cuda' or 'cuda:N'")
