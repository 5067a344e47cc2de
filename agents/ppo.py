"""PPO for the family's games (CoinRun, Maze), readable top to bottom (in the spirit of
CleanRL's ppo_procgen.py).

Algorithm: PPO with clipped policy and value losses, an entropy bonus, GAE, per-minibatch
advantage normalization, gradient-norm clipping, a linearly decaying learning rate and
reward normalization (rewards divided by the running std of the discounted return, as
procgen's baselines did with ``VecNormalize(ob=False)``).  Hyperparameters live in
:class:`~coinrun_mg.agents.config.PPOConfig`.

Where the data lives:

* The native environment (``env_id="native"``) is the game's torch core
  (:class:`CoinRunCore`, or :class:`MazeCore` with ``game="maze"``) on the training
  device.  Observations, actions, rewards and episode statistics stay there; actions are
  sampled on the device; only logged scalars cross to the host, once per iteration.
* Any other ``env_id`` is made with ``gymnasium.make_vec`` and wrapped in
  :class:`~coinrun_mg.agents.vec_adapter.VecEnvAdapter` (numpy <-> tensors; the ignored
  transitions of NEXT_STEP autoreset are masked out of the loss).
* Rollout storage (:class:`Rollout`) is preallocated once, observations as uint8.

One iteration, in :func:`train`'s loop: :func:`collect_rollout` (``num_steps`` steps of
every env, then GAE), :func:`ppo_update` (``update_epochs`` passes of minibatches),
logging, hooks and checkpoints.  ``_Run`` holds what the next iteration depends on.

With ``curriculum='plr'`` a :class:`~coinrun_mg.agents.level_replay.LevelReplay` chooses
each environment's next level when its episode ends (a replayed buffer level or a new
one), scores the levels after each rollout, and gives the transitions of new levels
weight 0 in the update (robust PLR: only replayed levels train the policy).  With the
default ``'dr'`` none of this runs.

An episode ends on ``terminated | truncated``: a timeout is treated as an episode end
without bootstrapping, as procgen (which has no truncation signal) did for the paper.

Checkpoints hold everything the next iteration depends on: weights, optimizer, the
iteration counter, the trainer's random generators, the reward normalizer, the running
episode statistics and the full environment state (level bank included).  A run resumed
from a checkpoint on the CPU therefore ends with the same weights, bit for bit, as a run
that was never interrupted (same machine, torch build and thread count; CUDA kernels are
not all deterministic, so on a GPU a resumed run is statistically, not bitwise, the
same).  Training draws its randomness from its own generators, so hooks that use the
global RNG (evaluation) do not change what is learned.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from coinrun_mg.envs import COMPILE_WORDS, NUM_ACTIONS, CoinRunCore, resolve_device
from coinrun_mg.envs.coinrun.memory import check_num_envs, observation_bytes
from coinrun_mg.envs.events import EventKeys, events_of
from coinrun_mg.envs.maze import SYMBOLIC_CHANNELS as MAZE_SYMBOLIC_CHANNELS
from coinrun_mg.envs.maze import MazeCore
from coinrun_mg.files import atomic_write_text

from .checkpoint import CHECKPOINT_NAME, read_checkpoint, read_run_config, write_checkpoint
from .config import NATIVE_ENV, RESUMABLE_FIELDS, PPOConfig
from .interrupt import StopOnInterrupt, TrainingInterrupted
from .level_replay import LevelReplay, append_history, trim_history
from .networks import Agent, sample_actions
from .run_dir import prepare_run_dir
from .vec_adapter import VecEnvAdapter

__all__ = [
    "CHECKPOINT_NAME",
    "Policy",
    "TrainResult",
    "TrainingHook",
    "TrainingInterrupted",
    "budget_path",
    "budget_step",
    "compute_gae",
    "first_episode_stats",
    "load_policy",
    "read_run_config",
    "train",
]


# ======================================================================================
# Pieces: hooks, the policy handed to them, GAE, reward normalization, episode stats
# ======================================================================================


class TrainingHook:
    """Something to run every ``every_steps`` environment steps during training.

    Subclass it (or pass any callable with that signature).  ``every_steps=None`` uses
    the config's ``eval_every``.  ``__call__`` gets the global step, the current
    :class:`Policy` (live weights; do not train it) and the TensorBoard writer, and may
    return scalars, which are logged at that step under the returned names
    (e.g. ``{"eval/coin_rate": 0.8}``).  Hooks also run once after the last iteration.
    """

    every_steps: int | None = None

    def __call__(self, step: int, policy: Policy, writer: Any) -> dict[str, float] | None:
        raise NotImplementedError


class Policy:
    """A trained agent as a function: uint8 obs ``[N, H, W, C]`` -> int64 actions ``[N]``.

    ``deterministic=False`` samples from the policy (how it was trained); ``True`` takes
    the most likely action.  Sampling uses ``generator`` (the global RNG when None), or
    the uniforms in ``(0, 1)`` passed as ``noise`` (``[N, num_actions]``, Gumbel-max:
    see :func:`~coinrun_mg.agents.networks.sample_actions`), which is how the evaluation gives
    every episode its own action noise; a deterministic policy ignores ``noise``.
    Numpy observations give numpy actions.  ``config`` is the training
    :class:`PPOConfig`; ``env_kwargs`` rebuilds the training environment
    (``policy.config.env_config()`` or ``gymnasium.make_vec(policy.env_id, ...)``).
    """

    def __init__(
        self,
        agent: Agent,
        config: PPOConfig,
        deterministic: bool = False,
        generator: torch.Generator | None = None,
    ):
        self.agent = agent
        self.config = config
        self.deterministic = deterministic
        self.generator = generator

    @property
    def device(self) -> torch.device:
        return next(self.agent.parameters()).device

    @property
    def obs_shape(self) -> tuple[int, ...]:
        return self.agent.obs_shape

    @property
    def env_id(self) -> str:
        """The training env id; Maze's core is named by its Gymnasium id."""
        if self.config.env_id == NATIVE_ENV and self.config.game == "maze":
            from coinrun_mg import MAZE_ENV_ID

            return MAZE_ENV_ID
        return self.config.env_id

    @property
    def env_kwargs(self) -> dict[str, Any]:
        return self.config.env_kwargs()

    def __call__(
        self, obs: torch.Tensor | np.ndarray, noise: torch.Tensor | None = None
    ) -> torch.Tensor | np.ndarray:
        as_numpy = isinstance(obs, np.ndarray)
        obs = torch.as_tensor(obs, device=self.device)
        if obs.ndim != 4 or tuple(obs.shape[1:]) != self.obs_shape:
            raise ValueError(
                f"observations of shape {tuple(obs.shape)} do not fit this policy: it was "
                f"trained on {self.config.obs_mode} observations of shape "
                f"(N, {', '.join(map(str, self.obs_shape))})"
            )
        with torch.no_grad():
            logits, _ = self.agent(obs)
        if self.deterministic:
            actions = logits.argmax(dim=-1)
        else:
            actions = sample_actions(logits, self.generator, uniforms=noise)
        return actions.cpu().numpy() if as_numpy else actions


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor,
    next_value: torch.Tensor,
    gamma: float,
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimates and value targets for a ``[T, N]`` rollout.

    ``dones[t]`` is 1 where the episode ended at step ``t`` (no bootstrapping past it);
    ``next_value`` is ``V(s_T)``, the value of the observation after the last step.
    Returns ``(advantages, returns)`` with ``returns = advantages + values``.
    """
    advantages = torch.zeros_like(rewards)
    last_advantage = torch.zeros_like(next_value)
    for t in reversed(range(rewards.shape[0])):
        following_value = next_value if t == rewards.shape[0] - 1 else values[t + 1]
        not_done = 1.0 - dones[t]
        delta = rewards[t] + gamma * following_value * not_done - values[t]
        last_advantage = delta + gamma * gae_lambda * not_done * last_advantage
        advantages[t] = last_advantage
    return advantages, advantages + values


class RewardNormalizer:
    """Scale rewards by the running std of each env's discounted return (reward-only
    ``VecNormalize``): ``r / sqrt(Var[G] + eps)``, clipped.  float64 on the device."""

    def __init__(self, num_envs: int, gamma: float, clip: float, device: torch.device):
        self.gamma, self.clip, self.epsilon = gamma, clip, 1e-8
        self.ret = torch.zeros(num_envs, dtype=torch.float64, device=device)
        self.mean = torch.zeros((), dtype=torch.float64, device=device)
        self.var = torch.ones((), dtype=torch.float64, device=device)
        self.count = torch.full((), 1e-4, dtype=torch.float64, device=device)

    def __call__(self, reward: torch.Tensor, done: torch.Tensor) -> torch.Tensor:
        self.ret = self.ret * self.gamma + reward
        self._update(self.ret)
        self.ret = self.ret * ~done
        scaled = reward / torch.sqrt(self.var + self.epsilon)
        return scaled.clamp(-self.clip, self.clip).to(torch.float32)

    def _update(self, x: torch.Tensor) -> None:
        # Parallel (Chan et al.) update of the running mean and variance with one batch.
        batch_mean, batch_var, batch_count = x.mean(), x.var(unbiased=False), x.numel()
        delta = batch_mean - self.mean
        total = self.count + batch_count
        self.mean = self.mean + delta * batch_count / total
        m2 = self.var * self.count + batch_var * batch_count
        self.var = (m2 + delta * delta * self.count * batch_count / total) / total
        self.count = total

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"ret": self.ret, "mean": self.mean, "var": self.var, "count": self.count}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for key in ("ret", "mean", "var", "count"):
            setattr(self, key, state[key].to(self.ret.device, torch.float64))


# Sums accumulated over the episodes that end within an iteration.
EPISODE_SUMS = (
    "episodes",
    "return",
    "length",
    "coin",
    "died",
    "timed_out",
    "moved_episodes",
    "moved_coin",
)


class EpisodeStats:
    """Per-env running return and length, and sums over finished episodes (on device)."""

    def __init__(self, num_envs: int, device: torch.device, events: EventKeys | None = None):
        self.events = events_of("coinrun") if events is None else events
        self.ret = torch.zeros(num_envs, dtype=torch.float64, device=device)
        self.length = torch.zeros(num_envs, dtype=torch.float64, device=device)
        self.sums = torch.zeros(len(EPISODE_SUMS), dtype=torch.float64, device=device)

    def update(self, reward, done, info, valid: torch.Tensor | None) -> None:
        self.ret += reward
        self.length += 1.0 if valid is None else valid
        d = done.to(torch.float64)
        coin = info.get(self.events.goal, reward > 0)  # the goal: coin or cheese
        moved = info.get(self.events.moved)
        moved = torch.zeros_like(d) if moved is None else moved.to(torch.float64) * d
        died = info.get("died")
        timed_out = info.get("timed_out")
        self.sums += torch.stack(
            [
                d.sum(),
                (self.ret * d).sum(),
                (self.length * d).sum(),
                (coin * d).sum(),
                (died * d).sum() if died is not None else d.new_zeros(()),
                (timed_out * d).sum() if timed_out is not None else d.new_zeros(()),
                moved.sum(),
                (coin * moved).sum(),
            ]
        )
        self.ret *= 1.0 - d
        self.length *= 1.0 - d

    def take(self) -> dict[str, float]:
        """The sums since the last call (one device -> host transfer), then zero them."""
        sums = dict(zip(EPISODE_SUMS, self.sums.tolist()))
        self.sums.zero_()
        return sums

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"ret": self.ret, "length": self.length, "sums": self.sums}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for key in ("ret", "length", "sums"):
            setattr(self, key, state[key].to(self.ret.device, torch.float64))


@dataclass
class TrainResult:
    """What :func:`train` returns."""

    agent: Agent
    config: PPOConfig
    global_step: int
    checkpoint: Path
    stats: dict[str, float]  # the scalars logged at the last iteration
    #: training seconds of the whole run, over every process that trained it (resumes)
    train_seconds: float = 0.0


# ======================================================================================
# Environments
# ======================================================================================


def make_env(config: PPOConfig, device: torch.device) -> CoinRunCore | MazeCore | VecEnvAdapter:
    """The training environment: the game's torch core, or a Gymnasium vector env adapted."""
    if config.env_id == NATIVE_ENV:
        core = MazeCore if config.game == "maze" else CoinRunCore
        return core(
            config.num_envs,
            config.env_config(),
            device=device,
            autoreset="same_step",
            check_actions=False,
            compile=COMPILE_WORDS[config.compile_env],
        )
    import gymnasium

    import coinrun_mg  # noqa: F401 - registers the coinrun_mg/* ids

    if config.env_id not in gymnasium.registry:
        known = sorted(i for i in gymnasium.registry if i.startswith("coinrun_mg/"))
        raise ValueError(
            f"env_id={config.env_id!r} is not a registered Gymnasium id; use 'native' or "
            f"one of {known} (or any registered vector env)"
        )
    kwargs = config.env_kwargs()
    if config.env_id in ("coinrun_mg/CoinRun-v0", "coinrun_mg/Maze-v0"):
        kwargs["device"] = str(device)
    vec_env = gymnasium.make_vec(config.env_id, num_envs=config.num_envs, **kwargs)
    return VecEnvAdapter(vec_env, device=device)


def _num_actions(env: CoinRunCore | MazeCore | VecEnvAdapter) -> int:
    return getattr(env, "num_actions", NUM_ACTIONS)


def _env_spec(config: PPOConfig, env: CoinRunCore | MazeCore | VecEnvAdapter) -> dict[str, Any]:
    return {
        "env_id": config.env_id,
        "env_kwargs": {
            k: (list(v) if isinstance(v, tuple) else v) for k, v in config.env_kwargs().items()
        },
        "obs_shape": list(env.observation_shape),
        "num_actions": _num_actions(env),
    }


# ======================================================================================
# Policies from checkpoints (files: checkpoint.py)
# ======================================================================================


def load_policy(
    path: str | os.PathLike,
    device: str | torch.device = "auto",
    *,
    deterministic: bool = False,
    obs_mode: str | None = None,
    env_id: str | None = None,
    game: str | None = None,
) -> Policy:
    """The policy stored in a checkpoint file (or a run directory), ready to act.

    ``obs_mode`` / ``env_id`` / ``game``, when given, must match what the policy was
    trained on; a mismatch raises ``ValueError`` (rather than failing later on a shape
    error, or playing a game it never saw).  Checkpoints written before Maze are
    CoinRun's.
    """
    device = resolve_device(device)
    data = read_checkpoint(path, device)
    config = PPOConfig.from_dict(data["config"])
    spec = data["env_spec"]
    for name, wanted in (("obs_mode", obs_mode), ("env_id", env_id), ("game", game)):
        if wanted is not None and wanted != getattr(config, name):
            raise ValueError(
                f"{path} holds a policy trained with {name}={getattr(config, name)!r}; "
                f"{name}={wanted!r} was asked for"
            )
    agent = Agent(
        tuple(spec["obs_shape"]), spec["num_actions"], config.network, config.network_scale
    ).to(device)
    agent.load_state_dict(data["model"])
    agent.eval()
    return Policy(agent, config, deterministic=deterministic)


def _resume_config(saved: PPOConfig, requested: PPOConfig | None, path: Path) -> PPOConfig:
    """The config of a resumed run: the saved one, with the allowed changes applied."""
    if requested is None:
        return saved
    changed = saved.differences(requested)
    forbidden = {k: v for k, v in changed.items() if k not in RESUMABLE_FIELDS}
    if forbidden:
        lines = ", ".join(f"{k}: {a!r} in the run, {b!r} asked" for k, (a, b) in forbidden.items())
        raise ValueError(
            f"cannot resume {path} with a different config ({lines}); only "
            f"{sorted(RESUMABLE_FIELDS)} may change on resume. Use a new run_dir for a new run."
        )
    return requested


def first_episode_stats(
    policy: Callable[[torch.Tensor], torch.Tensor],
    env_kwargs: dict[str, Any],
    num_envs: int = 256,
    seed: int = 1_000_000,
    device: str | torch.device = "cpu",
    game: str = "coinrun",
) -> dict[str, float]:
    """Outcome rates of ``policy`` over the first episode of ``num_envs`` fresh native
    environments of ``game`` (level keys ``seed + i``): ``coin_rate`` (the goal: coin or
    cheese), ``died_rate``, ``timeout_rate``, ``episode_length``.

    A quick, unbiased learning check (every environment counts once, however long its
    episode), not the evaluation module: it knows nothing of goals versus proxies.
    """
    from coinrun_mg.games import GAMES

    config = GAMES[game].config(**env_kwargs)
    core_class = MazeCore if game == "maze" else CoinRunCore
    core = core_class(num_envs, config, device=device, check_actions=False)
    goal = events_of(game).goal
    obs, _ = core.reset(seed)
    finished = torch.zeros(num_envs, dtype=torch.bool, device=core.device)
    outcome = {k: torch.zeros(num_envs, device=core.device) for k in ("coin", "died", "timeout")}
    length = torch.zeros(num_envs, device=core.device)
    stand_still = torch.full((num_envs,), 4, dtype=torch.int64, device=core.device)
    for _ in range(core.config.max_episode_steps):
        # Finished envs stand still at the start of their next level, where nothing ends
        # an episode within this loop, so no further levels are generated for them.
        actions = torch.where(finished, stand_still, policy(obs))
        obs, _, terminated, truncated, info = core.step(actions)
        length += ~finished
        now = ~finished & (terminated | truncated)
        outcome["coin"] += now & info[goal]
        outcome["died"] += now & info["died"]
        outcome["timeout"] += now & info["timed_out"]
        finished |= now
        if bool(finished.all()):
            break
    return {
        "coin_rate": outcome["coin"].mean().item(),
        "died_rate": outcome["died"].mean().item(),
        "timeout_rate": outcome["timeout"].mean().item(),
        "episode_length": length.mean().item(),
    }


# ======================================================================================
# Training
# ======================================================================================


def train(
    config: PPOConfig | None = None,
    run_dir: str | os.PathLike = "runs/ppo",
    *,
    resume: bool = False,
    overwrite: bool = False,
    hooks: Sequence[TrainingHook | Callable[..., Any]] = (),
    checkpoint_at: Sequence[int] = (),
) -> TrainResult:
    """Train a PPO agent and return it; logs, config and checkpoints go to ``run_dir``.

    With ``resume=True`` and a checkpoint in ``run_dir``, training continues from it
    (``config`` may then be None, or equal to the run's config up to
    :data:`~coinrun_mg.agents.config.RESUMABLE_FIELDS`); without a checkpoint it starts
    afresh, and the logs of the run that left none (killed before its first checkpoint)
    are moved aside to ``<run_dir>.replaced-<UTC time>``.

    A ``run_dir`` that already holds a run (a checkpoint, ``config.json`` or TensorBoard
    event files) is refused with a ``ValueError`` unless ``resume=True``, or
    ``overwrite=True``, which moves the whole old run aside to
    ``<run_dir>.replaced-<UTC time>`` (nothing is deleted) and starts a new one.

    A ``num_envs`` whose estimated memory exceeds what the device has free is refused
    up front (``ValueError``).  Ctrl-C while training in the main thread saves a
    checkpoint at the end of the iteration and raises :class:`TrainingInterrupted` (a
    ``KeyboardInterrupt`` carrying the checkpoint path and step); a second Ctrl-C
    interrupts at once.

    ``checkpoint_at``: step budgets.  At the first iteration boundary where the global
    step reaches a budget, a kept checkpoint ``checkpoints/step_<N>.pt`` is written
    (``N``: that step, :func:`budget_step`), before the run's own checkpoint, so a run
    resumed from its checkpoint has the files of every budget it passed.  Writing them
    changes nothing in training.  Resuming past a budget whose file is missing (a budget
    added after the run passed it) raises ``ValueError``: it cannot be made afterwards.
    """
    run_dir = Path(run_dir)
    checkpoint_path = run_dir / CHECKPOINT_NAME
    if resume and overwrite:
        raise ValueError("resume=True and overwrite=True exclude each other; choose one")
    saved = read_checkpoint(checkpoint_path) if resume and checkpoint_path.exists() else None
    if saved is not None:
        config = _resume_config(PPOConfig.from_dict(saved["config"]), config, checkpoint_path)
    elif config is None:
        raise ValueError(f"config=None is only allowed when resuming; {run_dir} has no checkpoint")

    budgets = _budget_steps(checkpoint_at, config, run_dir, saved)
    device = resolve_device(config.device)
    _check_memory(config, device)
    moved = prepare_run_dir(run_dir, CHECKPOINT_NAME, resume=resume, overwrite=overwrite)
    if moved is not None:
        print(f"{run_dir}: moved the old run's files to {moved}", flush=True)
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    run = _start_run(config, device, saved)
    rollout = Rollout.allocate(config.num_steps, config.num_envs, run.env.observation_shape, device)

    from torch.utils.tensorboard import SummaryWriter

    atomic_write_text(run_dir / "config.json", json.dumps(config.to_dict(), indent=2) + "\n")
    # purge_step hides the events a killed run logged after its last checkpoint.
    writer = SummaryWriter(str(run_dir), purge_step=run.global_step + 1 if saved else None)
    if saved is None:
        writer.add_text("config", _config_markdown(config))
    elif run.levels is not None:
        trim_history(run_dir, run.global_step)  # rows a killed run logged after its checkpoint
    progress = _Progress(config, run.global_step)
    hooks = list(hooks)
    policy = Policy(run.agent, config)
    stats: dict[str, float] = {}
    start_iteration, start_step = run.iteration, run.global_step
    stop = StopOnInterrupt().install()  # Ctrl-C: finish the iteration, save, stop
    try:
        for iteration in range(start_iteration + 1, config.num_iterations + 1):
            run.iteration = iteration
            iteration_start = time.time()
            _anneal_learning_rate(run)
            advantages, returns = collect_rollout(run, rollout)
            rollout_seconds = time.time() - iteration_start
            loss_sums = ppo_update(run, rollout, advantages, returns)
            run.global_step += rollout.size
            stats = _iteration_stats(run, rollout, returns, loss_sums)
            now = time.time()
            stats["charts/SPS"] = (run.global_step - start_step) / max(now - run.started, 1e-9)
            stats["perf/rollout_sps"] = rollout.size / max(rollout_seconds, 1e-9)
            stats["perf/update_seconds"] = now - iteration_start - rollout_seconds
            if run.levels is not None:  # the buffer's share of moved goals, scores, replays
                stats.update(run.levels.stats())
                run.levels.log_scores(writer, run.global_step)
                append_history(run_dir, run.global_step, stats)
            for key, value in stats.items():
                writer.add_scalar(key, value, run.global_step)

            previous_step = run.global_step - rollout.size
            last = iteration == config.num_iterations
            stats.update(_run_hooks(hooks, run, policy, writer, previous_step, last))
            saved_now = last or _crossed(config.checkpoint_every, previous_step, run.global_step)
            if run.global_step in budgets:  # before checkpoint.pt: see the docstring
                (run_dir / "checkpoints").mkdir(exist_ok=True)
                write_checkpoint(run.payload(), budget_path(run_dir, run.global_step))
            if saved_now:
                write_checkpoint(run.payload(), checkpoint_path)
                if run.levels is not None:
                    run.levels.write_buffer(run_dir)
                if config.keep_checkpoints and not last:
                    (run_dir / "checkpoints").mkdir(exist_ok=True)
                    name = f"step_{run.global_step:012d}.pt"
                    write_checkpoint(run.payload(), run_dir / "checkpoints" / name)
            writer.flush()
            progress.update(run.global_step, stats)
            if stop.requested and not last:
                if not saved_now:
                    write_checkpoint(run.payload(), checkpoint_path)
                raise TrainingInterrupted(checkpoint_path, run.global_step)
    finally:
        stop.restore()
        progress.close()
        writer.close()
        if not run.is_core:
            run.env.close()
    trained_now = run.iteration > start_iteration
    if not trained_now and saved is not None:
        print(f"{run_dir}: already trained for {run.global_step} steps (total_steps reached)")
    seconds = run.elapsed_before + (time.time() - run.started if trained_now else 0.0)
    return TrainResult(run.agent, config, run.global_step, checkpoint_path, stats, seconds)


def budget_step(budget: int, batch_size: int) -> int:
    """The global step of the first iteration boundary at or after ``budget``."""
    return -(-budget // batch_size) * batch_size


def budget_path(run_dir: str | os.PathLike, step: int) -> Path:
    """The kept checkpoint of global step ``step``: ``checkpoints/step_<step>.pt``."""
    return Path(run_dir) / "checkpoints" / f"step_{step:012d}.pt"


def _budget_steps(checkpoint_at, config: PPOConfig, run_dir: Path, saved) -> set[int]:
    """The steps where :func:`train` keeps a budget checkpoint; ``ValueError`` for a budget
    that is not a positive int, or that a resumed run passed without keeping its file."""
    done = saved["global_step"] if saved is not None else 0
    steps = set()
    for budget in checkpoint_at:
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
            raise ValueError(f"checkpoint_at budget {budget!r} is invalid; budgets are ints >= 1")
        step = budget_step(budget, config.batch_size)
        if step <= done and not budget_path(run_dir, step).exists():
            raise ValueError(
                f"checkpoint_at budget {budget} was passed at step {step} without a kept "
                f"checkpoint ({budget_path(run_dir, step)} is missing) and cannot be made "
                f"now that {run_dir} is at step {done}; drop the budget or use a new run_dir"
            )
        steps.add(step)
    return steps


# --- the run's state and its start ----------------------------------------------------


@dataclass
class _Run:
    """Everything the next iteration depends on: what a checkpoint holds."""

    config: PPOConfig
    device: torch.device
    env: CoinRunCore | MazeCore | VecEnvAdapter
    agent: Agent
    optimizer: torch.optim.Optimizer
    reward_norm: RewardNormalizer
    episodes: EpisodeStats
    sample_rng: torch.Generator  # actions
    shuffle_rng: torch.Generator  # minibatch order
    next_obs: torch.Tensor
    levels: LevelReplay | None = None  # the level-replay curriculum (curriculum='plr')
    iteration: int = 0
    global_step: int = 0
    elapsed_before: float = 0.0  # training seconds of earlier processes (resumed runs)
    started: float = 0.0  # time.time() when this process started training

    @property
    def is_core(self) -> bool:
        return isinstance(self.env, (CoinRunCore, MazeCore))

    def payload(self) -> dict[str, Any]:
        """The checkpoint of the run as it stands (see :mod:`.checkpoint`)."""
        return {
            "config": self.config.to_dict(),
            "env_spec": _env_spec(self.config, self.env),
            "model": self.agent.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "iteration": self.iteration,
            "global_step": self.global_step,
            "elapsed_s": self.elapsed_before + time.time() - self.started,
            "rng": _rng_state(self.device, self.sample_rng, self.shuffle_rng),
            "reward_normalizer": self.reward_norm.state_dict(),
            "episode_stats": self.episodes.state_dict(),
            "env": self.env.state_dict() if self.is_core else None,
            # only with PLR: a 'dr' checkpoint keeps exactly its earlier entries
            **({"level_replay": self.levels.state_dict()} if self.levels is not None else {}),
        }


def _start_run(config: PPOConfig, device: torch.device, saved: dict | None) -> _Run:
    """A new run (seeded from ``config.seed``), or the one ``saved`` in a checkpoint."""
    torch.manual_seed(config.seed)  # network init and the global RNG (hooks)
    sample_rng = torch.Generator(device).manual_seed(config.seed)
    shuffle_rng = torch.Generator(device).manual_seed(config.seed + 1)
    env = make_env(config, device)
    agent = Agent(env.observation_shape, _num_actions(env), config.network, config.network_scale)
    agent = agent.to(device)
    optimizer = torch.optim.Adam(agent.parameters(), lr=config.learning_rate, eps=config.adam_eps)
    run = _Run(
        config=config,
        device=device,
        env=env,
        agent=agent,
        optimizer=optimizer,
        reward_norm=RewardNormalizer(config.num_envs, config.gamma, config.reward_clip, device),
        episodes=EpisodeStats(config.num_envs, device, events_of(config.game)),
        sample_rng=sample_rng,
        shuffle_rng=shuffle_rng,
        next_obs=torch.empty(0),
    )
    if config.curriculum == "plr":
        run.levels = LevelReplay(config, device)
    if saved is None:
        run.next_obs, _ = env.reset(seed=config.seed)
        if run.levels is not None:
            run.levels.begin(env)
    else:
        _restore_run(run, saved)
    run.started = time.time()
    return run


def _restore_run(run: _Run, saved: dict[str, Any]) -> None:
    run.agent.load_state_dict(saved["model"])
    run.optimizer.load_state_dict(saved["optimizer"])
    run.iteration, run.global_step = saved["iteration"], saved["global_step"]
    run.elapsed_before = saved.get("elapsed_s", 0.0)
    _restore_rng(saved["rng"], run.device, run.sample_rng, run.shuffle_rng)
    run.reward_norm.load_state_dict(saved["reward_normalizer"])
    run.episodes.load_state_dict(saved["episode_stats"])
    if run.levels is not None:
        run.levels.load_state_dict(saved["level_replay"])
    if run.is_core:
        run.env.load_state_dict(saved["env"])
        run.next_obs = run.env.observe()
    else:
        warnings.warn(
            f"{run.config.env_id} cannot save its state: the resumed run starts new episodes "
            "and will not match an uninterrupted run exactly",
            stacklevel=4,
        )
        run.next_obs, _ = run.env.reset(seed=run.config.seed + run.global_step)


# --- one iteration: rollout, advantages, update, logging -------------------------------


@dataclass
class Rollout:
    """One rollout's storage, ``[num_steps, num_envs]`` on the device, allocated once."""

    obs: torch.Tensor  # uint8 [T, N, *obs_shape]
    actions: torch.Tensor
    logprobs: torch.Tensor
    rewards: torch.Tensor  # normalized when config.norm_reward
    dones: torch.Tensor
    values: torch.Tensor
    valid: torch.Tensor  # 0: a NEXT_STEP reset step (no transition)

    @classmethod
    def allocate(cls, num_steps: int, num_envs: int, obs_shape, device) -> Rollout:
        shape = (num_steps, num_envs)
        return cls(
            obs=torch.zeros((*shape, *obs_shape), dtype=torch.uint8, device=device),
            actions=torch.zeros(shape, dtype=torch.int64, device=device),
            logprobs=torch.zeros(shape, device=device),
            rewards=torch.zeros(shape, device=device),
            dones=torch.zeros(shape, device=device),
            values=torch.zeros(shape, device=device),
            valid=torch.ones(shape, device=device),
        )

    @property
    def size(self) -> int:
        return self.actions.numel()


def _anneal_learning_rate(run: _Run) -> None:
    config = run.config
    if config.anneal_lr:
        fraction_left = 1.0 - (run.iteration - 1.0) / config.num_iterations
        run.optimizer.param_groups[0]["lr"] = fraction_left * config.learning_rate


@torch.no_grad()
def collect_rollout(run: _Run, rollout: Rollout) -> tuple[torch.Tensor, torch.Tensor]:
    """``num_steps`` steps of every env into ``rollout`` (nothing leaves the device);
    returns the GAE advantages and value targets."""
    config, agent, env = run.config, run.agent, run.env
    for t in range(rollout.actions.shape[0]):
        rollout.obs[t] = run.next_obs
        logits, value = agent(run.next_obs)
        action = sample_actions(logits, run.sample_rng)
        logprob = torch.log_softmax(logits, -1).gather(1, action[:, None])[:, 0]
        run.next_obs, reward, terminated, truncated, info = env.step(action)
        done = terminated | truncated
        valid = None if run.is_core else (~info["reset_step"]).float()
        if valid is not None:
            rollout.valid[t] = valid
        rollout.actions[t], rollout.logprobs[t], rollout.values[t] = action, logprob, value
        rollout.dones[t] = done
        rollout.rewards[t] = run.reward_norm(reward, done) if config.norm_reward else reward
        run.episodes.update(reward, done, info, valid)
        if run.levels is not None:  # robust PLR: only replayed levels get gradients
            rollout.valid[t] = run.levels.record_step(t, reward, done, info)
            run.next_obs = run.levels.start_next_levels(env, done, run.next_obs)
    next_value = agent.get_value(run.next_obs)
    advantages, returns = compute_gae(
        rollout.rewards, rollout.values, rollout.dones, next_value, config.gamma, config.gae_lambda
    )
    if run.levels is not None:
        run.levels.score_rollout(rollout.values, advantages, rollout.dones, _value_scale(run))
    return advantages, returns


def _value_scale(run: _Run) -> float:
    """Raw reward units per unit of the value head (the reward normalizer's scale)."""
    if not run.config.norm_reward:
        return 1.0
    norm = run.reward_norm
    return float(torch.sqrt(norm.var + norm.epsilon))


def ppo_update(
    run: _Run, rollout: Rollout, advantages: torch.Tensor, returns: torch.Tensor
) -> torch.Tensor:
    """``update_epochs`` passes of shuffled minibatches over the rollout.  Returns the sums
    over minibatches (on the device) of the policy, value and entropy losses, the
    approximate KL and the clip fraction."""
    config, agent, optimizer = run.config, run.agent, run.optimizer
    b_obs = rollout.obs.reshape(rollout.size, *rollout.obs.shape[2:])
    b_actions, b_logprobs = rollout.actions.reshape(-1), rollout.logprobs.reshape(-1)
    b_advantages, b_returns = advantages.reshape(-1), returns.reshape(-1)
    b_values, b_valid = rollout.values.reshape(-1), rollout.valid.reshape(-1)
    loss_sums = torch.zeros(5, device=run.device)
    for _epoch in range(config.update_epochs):
        order = torch.randperm(rollout.size, generator=run.shuffle_rng, device=run.device)
        for start in range(0, rollout.size, config.minibatch_size):
            mb = order[start : start + config.minibatch_size]
            # Masked means: NEXT_STEP reset steps (weight 0) are not transitions.
            mb_valid = b_valid[mb]
            weight = mb_valid / mb_valid.sum().clamp(min=1.0)
            _, new_logprob, entropy, new_value = agent.get_action_and_value(
                b_obs[mb], b_actions[mb]
            )
            log_ratio = new_logprob - b_logprobs[mb]
            ratio = log_ratio.exp()
            with torch.no_grad():
                approx_kl = (((ratio - 1) - log_ratio) * weight).sum()
                clipped = (ratio - 1.0).abs() > config.clip_coef
                clip_fraction = (clipped * weight).sum()

            mb_adv = b_advantages[mb]
            if config.norm_adv:
                mean = (mb_adv * weight).sum()
                std = (((mb_adv - mean) ** 2) * weight).sum().sqrt()
                mb_adv = (mb_adv - mean) / (std + 1e-8)

            # Clipped surrogate policy loss.
            pg_losses = torch.max(
                -mb_adv * ratio,
                -mb_adv * ratio.clamp(1 - config.clip_coef, 1 + config.clip_coef),
            )
            pg_loss = (pg_losses * weight).sum()
            # Value loss, clipped around the rollout's value estimates.
            mb_returns = b_returns[mb]
            v_losses = (new_value - mb_returns) ** 2
            if config.clip_vloss:
                v_clipped = b_values[mb] + (new_value - b_values[mb]).clamp(
                    -config.clip_coef, config.clip_coef
                )
                v_losses = torch.max(v_losses, (v_clipped - mb_returns) ** 2)
            v_loss = 0.5 * (v_losses * weight).sum()
            entropy_mean = (entropy * weight).sum()
            loss = pg_loss - config.ent_coef * entropy_mean + config.vf_coef * v_loss

            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(agent.parameters(), config.max_grad_norm)
            optimizer.step()
            loss_sums += torch.stack(
                [pg_loss, v_loss, entropy_mean, approx_kl, clip_fraction]
            ).detach()
    return loss_sums


def _iteration_stats(
    run: _Run,
    rollout: Rollout,
    returns: torch.Tensor,
    loss_sums: torch.Tensor,
) -> dict[str, float]:
    """The iteration's losses and episode outcomes: one device -> host copy for the
    losses, one for the episode sums."""
    config = run.config
    num_updates = config.update_epochs * config.num_minibatches
    b_returns, b_values = returns.reshape(-1), rollout.values.reshape(-1)
    with torch.no_grad():
        explained_var = 1 - (b_returns - b_values).var() / b_returns.var()
    host = torch.cat([loss_sums / num_updates, explained_var[None]]).tolist()
    stats = {
        "losses/policy_loss": host[0],
        "losses/value_loss": host[1],
        "losses/entropy": host[2],
        "losses/approx_kl": host[3],
        "losses/clip_fraction": host[4],
        "losses/explained_variance": host[5],
        "charts/learning_rate": run.optimizer.param_groups[0]["lr"],
    }
    ep = run.episodes.take()
    if ep["episodes"] > 0:
        n = ep["episodes"]
        stats["charts/episodic_return"] = ep["return"] / n
        stats["charts/episode_length"] = ep["length"] / n
        goal = goal_word(run.config)
        stats[f"charts/{goal}_rate"] = ep["coin"] / n
        stats["charts/died_rate"] = ep["died"] / n
        stats["charts/timeout_rate"] = ep["timed_out"] / n
        stats["charts/episodes"] = n
        if ep["moved_episodes"] > 0:
            stats[f"charts/{goal}_rate_moved"] = ep["moved_coin"] / ep["moved_episodes"]
    return stats


def goal_word(config: PPOConfig) -> str:
    """The goal's name in logged scalars and status lines: "coin" or "cheese"."""
    return "cheese" if config.game == "maze" else "coin"


def _crossed(every: int, before: int, after: int) -> bool:
    """Whether a multiple of ``every`` (> 0) lies in ``(before, after]``."""
    return every > 0 and after // every > before // every


def _run_hooks(hooks, run: _Run, policy: Policy, writer, previous_step: int, last: bool):
    """Call the hooks that are due (and all of them after the last iteration); log and
    return what they report."""
    out: dict[str, float] = {}
    for hook in hooks:
        every = getattr(hook, "every_steps", None) or run.config.eval_every
        if _crossed(every, previous_step, run.global_step) or last:
            run.agent.eval()
            results = hook(run.global_step, policy, writer) or {}
            run.agent.train()
            for key, value in results.items():
                writer.add_scalar(key, value, run.global_step)
                out[key] = float(value)
    return out


# ======================================================================================
# Helpers: RNG state, progress display, config text
# ======================================================================================


def _check_memory(config: PPOConfig, device: torch.device) -> None:
    """Refuse a ``num_envs`` whose environments and rollout storage cannot fit."""
    obs_bytes = observation_bytes(config.obs_mode, config.view_size)
    if config.game == "maze" and config.obs_mode == "symbolic":
        obs_bytes = config.env_config().symbolic_side ** 2 * MAZE_SYMBOLIC_CHANNELS
    check_num_envs(config.num_envs, obs_bytes, device, num_steps=config.num_steps)


def _rng_state(device: torch.device, sample_rng, shuffle_rng) -> dict[str, Any]:
    return {
        "device_type": device.type,
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "sample": sample_rng.get_state(),
        "shuffle": shuffle_rng.get_state(),
    }


def _restore_rng(state: dict[str, Any], device: torch.device, sample_rng, shuffle_rng) -> None:
    torch.set_rng_state(state["torch"].cpu())
    cuda_states = state["cuda"]
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    if state["device_type"] == device.type:
        sample_rng.set_state(state["sample"].cpu())
        shuffle_rng.set_state(state["shuffle"].cpu())
    else:
        warnings.warn(
            f"the checkpoint was written on {state['device_type']}, this run is on "
            f"{device.type}: its random streams restart, so the run will not match an "
            "uninterrupted one exactly",
            stacklevel=3,
        )


class _Progress:
    """A tqdm bar on a terminal; otherwise a status line at most every 30 seconds."""

    def __init__(self, config: PPOConfig, global_step: int):
        total = config.num_iterations * config.batch_size
        self.total = total
        self.use_bar = config.progress_bar and sys.stderr.isatty()
        self.last_print = time.time()
        self.coin_rate = math.nan  # the goal's: coin or cheese
        self.goal = goal_word(config)
        self.bar = None
        if self.use_bar:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=total,
                initial=global_step,
                unit="step",
                unit_scale=True,
                dynamic_ncols=True,
                desc="train",
            )
        self.step = global_step

    def update(self, global_step: int, stats: dict[str, float]) -> None:
        self.coin_rate = stats.get(f"charts/{self.goal}_rate", self.coin_rate)
        sps = stats.get("charts/SPS", math.nan)
        if self.bar is not None:
            self.bar.update(global_step - self.step)
            self.bar.set_postfix(
                {"sps": f"{sps:.0f}", f"{self.goal}_rate": f"{self.coin_rate:.2f}"}
            )
        elif time.time() - self.last_print > 30 or global_step >= self.total:
            coin_rate = "-" if math.isnan(self.coin_rate) else f"{self.coin_rate:.2f}"
            print(
                f"step {global_step}/{self.total}  {sps:.0f} steps/s  {self.goal} rate {coin_rate}",
                flush=True,
            )
            self.last_print = time.time()
        self.step = global_step

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _config_markdown(config: PPOConfig) -> str:
    rows = "\n".join(f"|{k}|{v}|" for k, v in config.to_dict().items())
    return "|field|value|\n|-|-|\n" + rows
