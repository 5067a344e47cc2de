"""Stable-Baselines3 integration: CoinRun as an SB3 ``VecEnv``, a features extractor for the
symbolic view, and a callback that logs goal / proxy rates to SB3's logger.

    from stable_baselines3 import PPO
    from coinrun_mg.sb3 import GoalProxyEvalCallback, SymbolicCNN, make_vec_env

    venv = make_vec_env("coinrun_mg/CoinRun-v0", num_envs=16, seed=0, obs_mode="pixels")
    model = PPO("CnnPolicy", venv, tensorboard_log="runs/sb3")          # pixels: NatureCNN
    model.learn(1_000_000, callback=GoalProxyEvalCallback(eval_every=100_000))

    venv = make_vec_env(num_envs=16, seed=0, obs_mode="symbolic")     # 13x13x10 planes
    model = PPO("CnnPolicy", venv, policy_kwargs=dict(features_extractor_class=SymbolicCNN))

**The vector env.**  :func:`make_vec_env` wraps the batched Gymnasium vector env of either
backend (``CoinRunVectorEnv``: one torch core steps every environment at once;
``ProcgenCoinRunVectorEnv``: one ``ProcgenGym3Env``), never one Python env per index, and
gives it SB3's semantics instead of Gymnasium's: ``step`` returns ``(obs, rewards, dones,
infos)`` with ``infos`` a list of per-env dicts; an environment whose episode ends is reset
in the same step, its last observation in ``infos[i]["terminal_observation"]``;
``infos[i]["TimeLimit.truncated"]`` is True when the episode hit its step limit without
terminating; ``infos[i]["episode"] = {"r", "l", "t"}`` at each episode end, as SB3's
``Monitor`` writes it, so ``rollout/ep_rew_mean`` and ``evaluate_policy`` work without a
``Monitor`` / ``VecMonitor`` (``env_is_wrapped(Monitor)`` says True).  Every step's info
also carries the goal/proxy vocabulary of the envs: ``coin_collected``, ``reached_end``,
``died``, ``timed_out``, ``coin_randomized``, ``level_seed``, ``agent_x``, ``coin_x``,
``end_x`` (describing the step that ended, at an episode end).

**Seeding.**  ``seed(s)`` (what ``PPO(seed=s)`` calls) makes the next ``reset()`` start
environment ``i`` with the seed key ``s + i``: on the native backend it plays the same levels
as a single ``coinrun_mg/CoinRun-v0`` reset with ``s + i``.  procgen takes one seed for all
its environments (``s``), so its levels also depend on ``num_envs``.  ``reset()`` without a
pending seed draws fresh random keys (native) or moves every environment on (procgen).

**Images.**  Observations are uint8 ``[H, W, C]``, Gymnasium's layout.  SB3 treats any
uint8 3-D box with bounds 0..255 as an image (``is_image_space(..., check_channels=False)``
is True for pixels *and* for the 10-plane symbolic view) and, when the smallest dimension
comes last, wraps the env in ``VecTransposeImage`` by itself (``PPO(..., venv)``), so
policies see ``[C, H, W]`` and divide by 255 (``normalize_images=True``, the default).
Pixels (64x64x3) work with the default ``CnnPolicy`` (NatureCNN).  The symbolic view is too
small for NatureCNN (its 8x8 stride-4 kernel): use :class:`SymbolicCNN` as the features
extractor, with ``"CnnPolicy"`` or ``"MlpPolicy"``.  ``"MlpPolicy"`` alone also works
(flattened planes).  For view sizes below 10 SB3 takes the first dimension for the channels
and does not transpose; :class:`SymbolicCNN` finds the 10 planes either way.

**The procgen backend.**  procgen resets an environment inside the step that ends its
episode; the observation SB3 gets as ``terminal_observation`` for a coin, death or timeout
is the last frame procgen showed (one step before the end), as documented for
``coinrun_mg/ProcgenCoinRun-v0``.  An episode ended at the original end
(``end_terminates=True``, the test configuration) needs one more procgen step before its
next level exists: that environment's next step ignores its action and returns reward 0,
and the observation returned with the episode end is the terminal frame again.

:class:`GoalProxyEvalCallback` evaluates the model being trained with
:func:`coinrun_mg.eval.evaluate` (through :class:`SB3Policy`) and records
``eval/goal_rate``, ``eval/proxy_rate``, ``eval/died_rate``, ``eval/timeout_rate`` (test
configuration) and ``eval/train_coin_rate`` (training configuration) to SB3's logger, so
they land in its TensorBoard logs.

Needs ``pip install "coinrun-mg[sb3]"`` (stable-baselines3 >= 2.3).
"""

from __future__ import annotations

import contextlib
import io
import time
import warnings
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from coinrun_mg import COINRUN_ENV_ID, MAZE_ENV_ID, PROCGEN_COINRUN_ENV_ID, PROCGEN_MAZE_ENV_ID
from coinrun_mg.envs.coinrun.core import INFO_KEYS, CoinRunCore
from coinrun_mg.envs.coinrun.observation import SYMBOLIC_CHANNELS
from coinrun_mg.envs.maze.core import INFO_KEYS as MAZE_INFO_KEYS
from coinrun_mg.envs.maze.core import MazeCore
from coinrun_mg.eval import GOAL_PROXY_KEYS, goal_proxy_rates

try:
    # SB3 probes for the old ``gym`` package, which the procgen extra installs and which
    # prints a deprecation banner when imported: keep the banner out of users' output.
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        from stable_baselines3.common.base_class import BaseAlgorithm
        from stable_baselines3.common.callbacks import BaseCallback
        from stable_baselines3.common.monitor import Monitor
        from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
        from stable_baselines3.common.vec_env import VecEnv
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        f"coinrun_mg.sb3 needs stable-baselines3 ({exc}); install it with "
        'pip install "coinrun-mg[sb3]"'
    ) from exc

__all__ = [
    "ENV_IDS",
    "EVAL_SEED",
    "CoinRunSB3VecEnv",
    "GoalProxyEvalCallback",
    "SB3Policy",
    "SymbolicCNN",
    "make_vec_env",
]

#: The environment ids :func:`make_vec_env` accepts.
ENV_IDS = (COINRUN_ENV_ID, PROCGEN_COINRUN_ENV_ID, MAZE_ENV_ID, PROCGEN_MAZE_ENV_ID)
# procgen takes one seed for all its environments.
_PROCGEN_IDS = (PROCGEN_COINRUN_ENV_ID, PROCGEN_MAZE_ENV_ID)
#: Default first seed key of the callback's evaluations (the sweep's hook uses the same),
#: far from the small keys training runs usually start from.
EVAL_SEED = 1_000_000
# procgen's rand_seed is a signed 32-bit int.
_MAX_SEED = 2**31


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}={value!r} is invalid; it must be an int >= {minimum}")
    return int(value)


# ======================================================================================
# The vector env
# ======================================================================================


def make_vec_env(
    env_id: str = COINRUN_ENV_ID,
    num_envs: int = 16,
    seed: int | None = None,
    **env_kwargs: Any,
) -> CoinRunSB3VecEnv:
    """``num_envs`` CoinRun environments as one Stable-Baselines3 ``VecEnv``.

    ``env_id``: ``"coinrun_mg/CoinRun-v0"`` (native, batched torch) or
    ``"coinrun_mg/ProcgenCoinRun-v0"`` (stock procgen, pixels by default), or the Maze's
    ``"coinrun_mg/Maze-v0"`` and ``"coinrun_mg/ProcgenMaze-v0"``.  ``seed``: when given,
    the first ``reset()`` starts environment ``i`` with seed key ``seed + i`` (see
    :meth:`CoinRunSB3VecEnv.seed`).  ``env_kwargs`` are the environment's keyword
    arguments (``obs_mode``, ``rand_fraction``, ``distribution_mode``, ``render_mode``,
    ...; see the README).  The native env runs on ``device="cpu"`` unless told otherwise
    (SB3 keeps its rollouts in numpy on the CPU, so observations come to the host every
    step anyway); ``device="cuda"`` steps the simulator on a GPU.
    """
    if env_id == COINRUN_ENV_ID:
        from coinrun_mg.envs.coinrun.gym_env import CoinRunVectorEnv

        env_kwargs.setdefault("device", "cpu")
        venv = CoinRunVectorEnv(num_envs=num_envs, **env_kwargs)
    elif env_id == PROCGEN_COINRUN_ENV_ID:
        from coinrun_mg.envs.coinrun.procgen_env import ProcgenCoinRunVectorEnv

        venv = ProcgenCoinRunVectorEnv(num_envs=num_envs, **env_kwargs)
    elif env_id == MAZE_ENV_ID:
        from coinrun_mg.envs.maze.gym_env import MazeVectorEnv

        env_kwargs.setdefault("device", "cpu")
        venv = MazeVectorEnv(num_envs=num_envs, **env_kwargs)
    elif env_id == PROCGEN_MAZE_ENV_ID:
        from coinrun_mg.envs.maze.procgen_env import ProcgenMazeVectorEnv

        venv = ProcgenMazeVectorEnv(num_envs=num_envs, **env_kwargs)
    else:
        raise ValueError(f"env_id={env_id!r} is invalid; accepted values are {ENV_IDS}")
    sb3_env = CoinRunSB3VecEnv(venv, env_id)
    if seed is not None:
        sb3_env.seed(seed)
    return sb3_env


class CoinRunSB3VecEnv(VecEnv):
    """A batched CoinRun Gymnasium vector env behind SB3's ``VecEnv`` interface.

    Build it with :func:`make_vec_env`.  ``venv`` is the wrapped Gymnasium vector env
    (``venv.core`` its core), ``config`` its ``CoinRunConfig``, ``env_id`` its id.

    ``get_attr(name)`` reads an environment argument (a ``CoinRunConfig`` field such as
    ``rand_fraction``) or an attribute of this object, the same value for every index (the
    environments share one simulator and one configuration).  ``set_attr`` sets an
    attribute of this object for all environments at once; the configuration is fixed at
    creation (levels are generated ahead), so setting one of its fields raises
    ``ValueError``.  ``env_method("render")`` returns each environment's frame.
    """

    def __init__(self, venv: Any, env_id: str):
        self.venv = venv
        self.env_id = env_id
        self.config = venv.config
        self._info_keys = (
            MAZE_INFO_KEYS if env_id in (MAZE_ENV_ID, PROCGEN_MAZE_ENV_ID) else INFO_KEYS
        )
        # VecEnv.__init__ reads render_mode through get_attr, so it must exist first.
        self.render_mode = venv.render_mode
        super().__init__(venv.num_envs, venv.single_observation_space, venv.single_action_space)
        self.metadata = dict(self.metadata, render_fps=venv.metadata.get("render_fps"))
        self._actions: np.ndarray | None = None
        self._returns = np.zeros(self.num_envs, dtype=np.float64)
        self._lengths = np.zeros(self.num_envs, dtype=np.int64)
        self._t_start = time.time()  # Monitor's episode "t" counts from creation

    # -- what the evaluation module needs to rebuild this environment ------------------
    @property
    def core(self) -> Any:
        """The wrapped env's core (``CoinRunCore`` or ``ProcgenCoinRunCore``)."""
        return self.venv.core

    @property
    def env_kwargs(self) -> dict[str, Any]:
        """The environment arguments (``CoinRunConfig`` fields) this env was made with."""
        kwargs = self.config.to_dict()
        if "coin_region" not in kwargs:  # the Maze
            return kwargs
        kwargs["coin_region"] = tuple(kwargs["coin_region"])
        if self.config.obs_mode != "symbolic":
            del kwargs["view_size"]  # sizes symbolic views only; procgen refuses it
        return kwargs

    # -- seeding and resetting -----------------------------------------------------------
    def seed(self, seed: int | None = None) -> list[int]:
        """Environment ``i`` starts its next ``reset()`` with seed key ``seed + i``.

        ``None`` draws a random seed.  Returns the keys.  The procgen backend seeds all
        its environments from ``seed`` alone (procgen's single ``rand_seed``).
        """
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0]) % (_MAX_SEED - self.num_envs)
        seed = _check_int("seed", seed, 0)
        if self.env_id in _PROCGEN_IDS and seed >= _MAX_SEED:
            raise ValueError(
                f"seed={seed!r} is invalid for the procgen backend; procgen's rand_seed must "
                f"be an int in [0, {_MAX_SEED})"
            )
        self._seeds = [seed + i for i in range(self.num_envs)]
        return list(self._seeds)

    def reset(self) -> np.ndarray:
        """Start every environment (with the seeds of :meth:`seed` if one is pending)."""
        seeds = None if all(s is None for s in self._seeds) else [int(s) for s in self._seeds]
        if seeds is not None and self.env_id in _PROCGEN_IDS:
            seeds = seeds[0]  # procgen derives every environment from one seed
        obs, info = self.venv.reset(seed=seeds)  # reset options: the envs take none
        self.reset_infos = self._info_dicts(info, self._info_keys)
        self._returns[:] = 0.0
        self._lengths[:] = 0
        self._reset_seeds()
        self._reset_options()
        return obs

    # -- stepping ------------------------------------------------------------------------
    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions).reshape(-1)  # SB3 may send [N, 1]

    def step_wait(self):
        if self._actions is None:
            raise RuntimeError("step_wait() was called without step_async(actions) first")
        actions, self._actions = self._actions, None
        obs, reward, terminated, truncated, info = self.venv.step(actions)
        done = np.logical_or(terminated, truncated)
        infos = self._info_dicts(info, self._info_keys)
        self._returns += reward
        self._lengths += 1
        time_limit = truncated & ~terminated
        for i, item in enumerate(infos):
            item["TimeLimit.truncated"] = bool(time_limit[i])
        if done.any():
            ended = np.flatnonzero(done)
            # Copies: the rows of obs are overwritten with the new episodes' first frames.
            terminal = obs[ended].copy()
            obs = self._start_next_episodes(done, obs)
            elapsed = round(time.time() - self._t_start, 6)
            for k, i in enumerate(ended.tolist()):
                infos[i]["terminal_observation"] = terminal[k]
                infos[i]["episode"] = {
                    "r": round(float(self._returns[i]), 6),
                    "l": int(self._lengths[i]),
                    "t": elapsed,
                }
            self._returns[ended] = 0.0
            self._lengths[ended] = 0
        return obs, reward.astype(np.float32), done, infos

    def _start_next_episodes(self, done: np.ndarray, obs: np.ndarray) -> np.ndarray:
        """Reset the ended environments now (SB3's same-step autoreset); returns the
        observations with their new first frames.

        The Gymnasium envs use the NEXT_STEP autoreset (the next ``step`` would reset);
        starting the next episodes here leaves nothing pending, so their next ``step``
        is an ordinary one.
        """
        core = self.venv.core
        if isinstance(core, (CoinRunCore, MazeCore)):
            core.start_next_episodes(torch.from_numpy(done).to(core.device))
            index = torch.from_numpy(np.flatnonzero(done)).to(core.device)
            obs[done] = core.observe(index).cpu().numpy()  # render only the new episodes
            return obs
        new_obs, _ = core.start_pending_episodes()
        return new_obs.copy()  # procgen's buffer: the next step may reuse it

    @staticmethod
    def _info_dicts(info: dict[str, np.ndarray], keys=INFO_KEYS) -> list[dict[str, Any]]:
        """Gymnasium's dict of arrays as SB3's list of per-env dicts (Python scalars)."""
        keys = [key for key in keys if key in info]
        columns = [np.asarray(info[key]).tolist() for key in keys]
        return [dict(zip(keys, row)) for row in zip(*columns)]

    def close(self) -> None:
        self.venv.close()

    # -- rendering -----------------------------------------------------------------------
    def get_images(self) -> list[np.ndarray | None]:
        """Each environment's RGB frame (``render_mode="rgb_array"``), else Nones."""
        if self.render_mode != "rgb_array":
            warnings.warn(
                f"get_images() needs render_mode='rgb_array'; this env was made with "
                f"render_mode={self.render_mode!r}",
                stacklevel=2,
            )
            return [None] * self.num_envs
        frames = self.venv.render()
        if frames is None:  # not reset yet
            return [None] * self.num_envs
        return list(frames)

    # -- attributes and methods --------------------------------------------------------------
    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        indices = self._indices(indices)
        if attr_name in self._config_fields():
            value = getattr(self.config, attr_name)
        elif hasattr(self, attr_name):
            value = getattr(self, attr_name)
        else:
            raise AttributeError(
                f"CoinRun environments have no attribute {attr_name!r}; they have the "
                f"environment arguments {self._config_fields()} and the attributes of "
                f"{type(self).__name__}"
            )
        return [value for _ in indices]

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        indices = self._indices(indices)
        if sorted(indices) != list(range(self.num_envs)):
            raise ValueError(
                f"indices={indices!r} is invalid for set_attr: the {self.num_envs} "
                "environments share one batched simulator, so an attribute is set for all "
                "of them; pass indices=None"
            )
        if attr_name in self._config_fields():
            raise ValueError(
                f"attr_name={attr_name!r} is an environment argument, fixed when the "
                "environment is made (levels are generated ahead of time); make a new "
                f"environment with make_vec_env(..., {attr_name}=...)"
            )
        setattr(self, attr_name, value)

    def env_method(
        self, method_name: str, *method_args: Any, indices: Any = None, **method_kwargs: Any
    ) -> list[Any]:
        indices = self._indices(indices)
        if method_name == "render":
            frames = self.get_images()
            return [frames[i] for i in indices]
        if method_name == "get_wrapper_attr":
            return self.get_attr(*method_args, indices=indices, **method_kwargs)
        raise AttributeError(
            f"method_name={method_name!r} is not available per environment; accepted values "
            "are 'render' and 'get_wrapper_attr' (the environments are one batched simulator: "
            "call methods of this VecEnv or of .venv directly)"
        )

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        # The episode statistics SB3's Monitor would add are already in the infos.
        return [wrapper_class is Monitor for _ in self._indices(indices)]

    def _indices(self, indices: Any) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        if isinstance(indices, (int, np.integer)):
            indices = [indices]
        out = [int(i) for i in indices]
        if any(not 0 <= i < self.num_envs for i in out):
            raise ValueError(
                f"indices={indices!r} is invalid; environment indices are ints in "
                f"[0, {self.num_envs})"
            )
        return out

    def _config_fields(self) -> tuple[str, ...]:
        return tuple(self.config.to_dict())


# ======================================================================================
# Features extractor for the symbolic view
# ======================================================================================


class SymbolicCNN(BaseFeaturesExtractor):
    """Features of the symbolic view: conv 3x3 (16), conv 3x3 stride 2 (32), linear
    ``features_dim`` (the shape of the package's compact CNN), ReLUs between.

    Accepts the observation space channels last (``[view, view, 10]``, as the env makes
    it) or first (``[10, view, view]``, after SB3's ``VecTransposeImage``); view sizes are
    odd, so the 10 planes are never ambiguous.  Expects SB3's default
    ``normalize_images=True`` (inputs in [0, 1]).  SB3's ``ortho_init`` initialises it.
    """

    def __init__(
        self,
        observation_space: spaces.Box,
        features_dim: int = 256,
        channels: tuple[int, int] = (16, 32),
    ):
        shape = tuple(getattr(observation_space, "shape", None) or ())
        if len(shape) != 3 or SYMBOLIC_CHANNELS not in (shape[0], shape[-1]):
            raise ValueError(
                f"observation_space of shape {shape} is invalid for SymbolicCNN; it needs the "
                f"symbolic view, (view, view, {SYMBOLIC_CHANNELS}) or "
                f"({SYMBOLIC_CHANNELS}, view, view) (make the env with obs_mode='symbolic')"
            )
        _check_int("features_dim", features_dim, 1)
        super().__init__(observation_space, features_dim)
        self.channels_last = shape[-1] == SYMBOLIC_CHANNELS
        height, width = shape[:2] if self.channels_last else shape[1:]
        self.cnn = nn.Sequential(
            nn.Conv2d(SYMBOLIC_CHANNELS, channels[0], 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels[0], channels[1], 3, stride=2),
            nn.ReLU(),
            nn.Flatten(),
        )
        flat = channels[1] * ((height - 3) // 2 + 1) * ((width - 3) // 2 + 1)
        self.linear = nn.Sequential(nn.Linear(flat, features_dim), nn.ReLU())

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            observations = observations.permute(0, 3, 1, 2)
        return self.linear(self.cnn(observations))


# ======================================================================================
# Evaluation
# ======================================================================================


class SB3Policy:
    """An SB3 model as a policy for :func:`coinrun_mg.eval.evaluate`: uint8 observations
    ``[N, H, W, C]`` (tensor or numpy) -> int64 actions ``[N]`` (same kind, same device).

    ``model.predict`` transposes image observations to the layout the model was trained
    on.  ``deterministic=False`` samples (as in training) from the global torch RNG, which
    ``evaluate`` seeds.  When the model's env is a :class:`CoinRunSB3VecEnv`,
    ``env_id`` and ``env_kwargs`` describe it, and ``evaluate`` starts from them.
    """

    def __init__(self, model: BaseAlgorithm, deterministic: bool = False):
        self.model = model
        self.deterministic = deterministic
        env = model.get_env()
        base = env.unwrapped if env is not None else None
        if isinstance(base, CoinRunSB3VecEnv):
            self.env_id: str | None = base.env_id
            self.env_kwargs: dict[str, Any] = base.env_kwargs
        else:
            self.env_id, self.env_kwargs = None, {}

    def __call__(self, obs: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        array = obs if isinstance(obs, np.ndarray) else obs.cpu().numpy()
        actions, _ = self.model.predict(array, deterministic=self.deterministic)
        actions = np.asarray(actions, dtype=np.int64).reshape(-1)
        if isinstance(obs, np.ndarray):
            return actions
        return torch.from_numpy(actions).to(obs.device)


class GoalProxyEvalCallback(BaseCallback):
    """Every ``eval_every`` environment steps, evaluate the model with
    :func:`coinrun_mg.eval.evaluate` and record the rates to SB3's logger.

    Two evaluations of ``episodes`` episodes each, level keys from ``seed``: the test
    configuration (every coin moved, the episode ends at the original end; ``evaluate``'s
    defaults) gives ``eval/goal_rate``, ``eval/proxy_rate``, ``eval/died_rate`` and
    ``eval/timeout_rate``; the training configuration (the training env's
    ``rand_fraction``, ``end_terminates=False``) gives ``eval/train_coin_rate``.  The
    environment arguments start from the training env's (``obs_mode``,
    ``distribution_mode``, ...); ``eval_kwargs`` go to ``evaluate`` (``num_envs``,
    ``device``, ``env_id``, or environment arguments such as ``coin_placement``).  The
    values are dumped at the current step, so they land in the TensorBoard log of
    ``PPO(..., tensorboard_log=dir)``.  ``eval_at_end`` also evaluates when training
    ends (the final model; a due evaluation in the last rollout waits for it).
    ``history`` keeps ``(num_timesteps, results)`` of every evaluation.
    ``deterministic=False`` samples actions as in training (the package's own training
    hook does the same); ``evaluate`` forks the torch RNG, so training is unaffected.
    The training env must be one of :func:`make_vec_env`'s, possibly wrapped (not with
    observation normalisation: the evaluation feeds raw observations).
    """

    KEYS = GOAL_PROXY_KEYS

    def __init__(
        self,
        eval_every: int = 100_000,
        episodes: int = 256,
        seed: int = EVAL_SEED,
        *,
        deterministic: bool = False,
        eval_at_end: bool = True,
        verbose: int = 0,
        **eval_kwargs: Any,
    ):
        super().__init__(verbose)
        self.eval_every = _check_int("eval_every", eval_every, 1)
        self.episodes = _check_int("episodes", episodes, 1)
        self.seed = _check_int("seed", seed, 0)
        for name in ("good_levels", "reference_policy"):
            if name in eval_kwargs:
                raise ValueError(
                    f"{name} is not accepted by GoalProxyEvalCallback: it logs the rates over "
                    "all levels; apply the good-levels filter with coinrun_mg.eval.evaluate "
                    "after training"
                )
        self.deterministic = deterministic
        self.eval_at_end = eval_at_end
        self.eval_kwargs = eval_kwargs
        self.history: list[tuple[int, dict[str, float]]] = []
        self._train_rand_fraction = 0.0
        self._last_bucket = 0
        self._last_eval_step: int | None = None

    def _init_callback(self) -> None:
        base = self.training_env.unwrapped
        if not isinstance(base, CoinRunSB3VecEnv):
            raise ValueError(
                f"GoalProxyEvalCallback needs a training env made by coinrun_mg.sb3."
                f"make_vec_env; the model's env is {type(base).__name__}"
            )
        self._train_rand_fraction = base.config.rand_fraction
        self._last_bucket = self.num_timesteps // self.eval_every

    def _on_step(self) -> bool:
        # num_timesteps grows by num_envs a step: evaluate when it crosses a multiple.
        bucket = self.num_timesteps // self.eval_every
        if bucket > self._last_bucket:
            self._last_bucket = bucket
            # In the last rollout, the evaluation at the end of training (after the last
            # update) stands for this one: evaluating here would log a stale policy.
            final_rollout = self.num_timesteps >= getattr(self.model, "_total_timesteps", 0)
            if not (self.eval_at_end and final_rollout):
                self.evaluate_now()
        return True

    def _on_training_end(self) -> None:
        # Already evaluated at this step: training was stopped early, no update since.
        if self.eval_at_end and self._last_eval_step != self.num_timesteps:
            self.evaluate_now()

    def evaluate_now(self) -> dict[str, float]:
        """Evaluate the current model, record and dump the rates; returns them."""
        policy = SB3Policy(self.model, deterministic=self.deterministic)
        common = {"episodes": self.episodes, "seed": self.seed, **self.eval_kwargs}
        results = goal_proxy_rates(policy, self._train_rand_fraction, **common)
        for key, value in results.items():
            self.logger.record(key, value)
        self.logger.dump(self.num_timesteps)
        self.history.append((self.num_timesteps, results))
        self._last_eval_step = self.num_timesteps
        if self.verbose:
            rates = ", ".join(f"{k.split('/')[1]} {v:.3f}" for k, v in results.items())
            print(f"step {self.num_timesteps}: {rates}")
        return results
