"""PPO for CoinRun, readable top to bottom (in the spirit of CleanRL's ppo_procgen.py).

Algorithm: PPO with clipped policy and value losses, an entropy bonus, GAE, per-minibatch
advantage normalization, gradient-norm clipping, a linearly decaying learning rate and
reward normalization (rewards divided by the running std of the discounted return, as
procgen's baselines did with ``VecNormalize(ob=False)``).  Hyperparameters live in
:class:`~coinrun_mg.agents.config.PPOConfig`.

Where the data lives:

* The native environment (``env_id="native"``) is a :class:`CoinRunCore` on the training
  device.  Observations, actions, rewards and episode statistics stay there; actions are
  sampled on the device; only logged scalars cross to the host, once per iteration.
* Any other ``env_id`` is made with ``gymnasium.make_vec`` and wrapped in
  :class:`~coinrun_mg.agents.vec_adapter.VecEnvAdapter` (numpy <-> tensors; the ignored
  transitions of NEXT_STEP autoreset are masked out of the loss).
* Rollout storage is preallocated once, observations as uint8.

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

from coinrun_mg.envs import COMPILE_WORDS, NUM_ACTIONS, CoinRunConfig, CoinRunCore, resolve_device

from .config import NATIVE_ENV, RESUMABLE_FIELDS, PPOConfig
from .networks import Agent, sample_actions
from .vec_adapter import VecEnvAdapter

__all__ = [
    "CHECKPOINT_NAME",
    "Policy",
    "TrainResult",
    "TrainingHook",
    "compute_gae",
    "first_episode_stats",
    "load_policy",
    "read_run_config",
    "train",
]

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_FORMAT = "coinrun-mg-ppo"
CHECKPOINT_VERSION = 1


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
    the most likely action.  Sampling uses ``generator`` (the global RNG when None).
    Numpy observations give numpy actions.  ``config`` is the training
    :class:`PPOConfig`; ``env_kwargs`` rebuilds the training environment
    (``CoinRunConfig(**policy.env_kwargs)`` or ``gymnasium.make_vec(policy.env_id, ...)``).
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
        return self.config.env_id

    @property
    def env_kwargs(self) -> dict[str, Any]:
        return self.config.env_kwargs()

    def __call__(self, obs: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
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
            actions = sample_actions(logits, self.generator)
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

    def __init__(self, num_envs: int, device: torch.device):
        self.ret = torch.zeros(num_envs, dtype=torch.float64, device=device)
        self.length = torch.zeros(num_envs, dtype=torch.float64, device=device)
        self.sums = torch.zeros(len(EPISODE_SUMS), dtype=torch.float64, device=device)

    def update(self, reward, done, info, valid: torch.Tensor | None) -> None:
        self.ret += reward
        self.length += 1.0 if valid is None else valid
        d = done.to(torch.float64)
        coin = info.get("coin_collected", reward > 0)
        moved = info.get("coin_randomized")
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


# ======================================================================================
# Environments
# ======================================================================================


def make_env(config: PPOConfig, device: torch.device) -> CoinRunCore | VecEnvAdapter:
    """The training environment: the torch core, or a Gymnasium vector env adapted."""
    if config.env_id == NATIVE_ENV:
        env_config = CoinRunConfig(**config.env_kwargs())
        return CoinRunCore(
            config.num_envs,
            env_config,
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
    if config.env_id == "coinrun_mg/CoinRun-v0":
        kwargs["device"] = str(device)
    vec_env = gymnasium.make_vec(config.env_id, num_envs=config.num_envs, **kwargs)
    return VecEnvAdapter(vec_env, device=device)


def _num_actions(env: CoinRunCore | VecEnvAdapter) -> int:
    return getattr(env, "num_actions", NUM_ACTIONS)


def _env_spec(config: PPOConfig, env: CoinRunCore | VecEnvAdapter) -> dict[str, Any]:
    return {
        "env_id": config.env_id,
        "env_kwargs": {
            k: (list(v) if isinstance(v, tuple) else v) for k, v in config.env_kwargs().items()
        },
        "obs_shape": list(env.observation_shape),
        "num_actions": _num_actions(env),
    }


# ======================================================================================
# Checkpoints
# ======================================================================================


def _atomic_torch_save(obj: Any, path: Path) -> None:
    """Write to a temporary file in the same directory, fsync, then rename over ``path``:
    a reader (or a crash) sees the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _atomic_write_text(text: str, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def read_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict:
    """Load a training checkpoint (``torch.load(weights_only=True)``) and check its format."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    data = torch.load(path, map_location=device, weights_only=True)
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a coinrun-mg PPO checkpoint")
    if data.get("version", 0) > CHECKPOINT_VERSION:
        raise ValueError(
            f"{path} has checkpoint version {data['version']}; this coinrun-mg reads "
            f"versions up to {CHECKPOINT_VERSION} (upgrade coinrun-mg)"
        )
    return data


def read_run_config(run_dir: str | os.PathLike) -> PPOConfig | None:
    """The config of the run in ``run_dir`` (from its checkpoint), or None if it has none."""
    path = Path(run_dir) / CHECKPOINT_NAME
    if not path.exists():
        return None
    return PPOConfig.from_dict(read_checkpoint(path)["config"])


def load_policy(
    path: str | os.PathLike,
    device: str | torch.device = "auto",
    *,
    deterministic: bool = False,
    obs_mode: str | None = None,
    env_id: str | None = None,
) -> Policy:
    """The policy stored in a checkpoint file (or a run directory), ready to act.

    ``obs_mode`` / ``env_id``, when given, must match what the policy was trained on;
    a mismatch raises ``ValueError`` (rather than failing later on a shape error).
    """
    device = resolve_device(device)
    data = read_checkpoint(path, device)
    config = PPOConfig.from_dict(data["config"])
    spec = data["env_spec"]
    for name, wanted in (("obs_mode", obs_mode), ("env_id", env_id)):
        if wanted is not None and wanted != getattr(config, name):
            raise ValueError(
                f"{path} holds a policy trained with {name}={getattr(config, name)!r}; "
                f"{name}={wanted!r} was asked for"
            )
    agent = Agent(
        tuple(spec["obs_shape"]), spec["num_actions"], config.network, config.impala_scale
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
) -> dict[str, float]:
    """Outcome rates of ``policy`` over the first episode of ``num_envs`` fresh native
    environments (level keys ``seed + i``): ``coin_rate``, ``died_rate``,
    ``timeout_rate``, ``episode_length``.

    A quick, unbiased learning check (every environment counts once, however long its
    episode), not the evaluation module: it knows nothing of goals versus proxies.
    """
    core = CoinRunCore(num_envs, CoinRunConfig(**env_kwargs), device=device, check_actions=False)
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
        outcome["coin"] += now & info["coin_collected"]
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
    hooks: Sequence[TrainingHook | Callable[..., Any]] = (),
) -> TrainResult:
    """Train a PPO agent and return it; logs, config and checkpoints go to ``run_dir``.

    With ``resume=True`` and a checkpoint in ``run_dir``, training continues from it
    (``config`` may then be None, or equal to the run's config up to
    :data:`~coinrun_mg.agents.config.RESUMABLE_FIELDS`); without a checkpoint it starts
    afresh.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_path = run_dir / CHECKPOINT_NAME
    saved = read_checkpoint(checkpoint_path) if resume and checkpoint_path.exists() else None
    if saved is not None:
        config = _resume_config(PPOConfig.from_dict(saved["config"]), config, checkpoint_path)
    elif config is None:
        raise ValueError(f"config=None is only allowed when resuming; {run_dir} has no checkpoint")

    device = resolve_device(config.device)
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    torch.manual_seed(config.seed)  # network init and the global RNG (hooks)
    sample_rng = torch.Generator(device).manual_seed(config.seed)  # actions
    shuffle_rng = torch.Generator(device).manual_seed(config.seed + 1)  # minibatches

    # --- environment, agent, optimizer, normalizers ------------------------------------
    env = make_env(config, device)
    agent = Agent(env.observation_shape, _num_actions(env), config.network, config.impala_scale)
    agent = agent.to(device)
    optimizer = torch.optim.Adam(agent.parameters(), lr=config.learning_rate, eps=config.adam_eps)
    reward_norm = RewardNormalizer(config.num_envs, config.gamma, config.reward_clip, device)
    episodes = EpisodeStats(config.num_envs, device)
    is_core = isinstance(env, CoinRunCore)

    start_iteration, global_step, elapsed_before = 0, 0, 0.0
    if saved is None:
        next_obs, _ = env.reset(seed=config.seed)
    else:
        agent.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        start_iteration, global_step = saved["iteration"], saved["global_step"]
        elapsed_before = saved.get("elapsed_s", 0.0)
        _restore_rng(saved["rng"], device, sample_rng, shuffle_rng)
        reward_norm.load_state_dict(saved["reward_normalizer"])
        episodes.load_state_dict(saved["episode_stats"])
        if is_core:
            env.load_state_dict(saved["env"])
            next_obs = env.observe()
        else:
            warnings.warn(
                f"{config.env_id} cannot save its state: the resumed run starts new episodes "
                "and will not match an uninterrupted run exactly",
                stacklevel=2,
            )
            next_obs, _ = env.reset(seed=config.seed + global_step)

    # --- logging ------------------------------------------------------------------------
    from torch.utils.tensorboard import SummaryWriter

    _atomic_write_text(json.dumps(config.to_dict(), indent=2) + "\n", run_dir / "config.json")
    # purge_step hides the events a killed run logged after its last checkpoint.
    writer = SummaryWriter(str(run_dir), purge_step=global_step + 1 if saved else None)
    if saved is None:
        writer.add_text("config", _config_markdown(config))
    progress = _Progress(config, global_step)

    def save_checkpoint(path: Path) -> None:
        _atomic_torch_save(
            {
                "format": CHECKPOINT_FORMAT,
                "version": CHECKPOINT_VERSION,
                "config": config.to_dict(),
                "env_spec": _env_spec(config, env),
                "model": agent.state_dict(),
                "optimizer": optimizer.state_dict(),
                "iteration": iteration,
                "global_step": global_step,
                "elapsed_s": elapsed_before + time.time() - start_time,
                "rng": _rng_state(device, sample_rng, shuffle_rng),
                "reward_normalizer": reward_norm.state_dict(),
                "episode_stats": episodes.state_dict(),
                "env": env.state_dict() if is_core else None,
            },
            path,
        )

    # --- rollout storage, preallocated on the device -------------------------------------
    T, N = config.num_steps, config.num_envs
    obs_buf = torch.zeros((T, N, *env.observation_shape), dtype=torch.uint8, device=device)
    actions_buf = torch.zeros((T, N), dtype=torch.int64, device=device)
    logprobs_buf = torch.zeros((T, N), device=device)
    rewards_buf = torch.zeros((T, N), device=device)
    dones_buf = torch.zeros((T, N), device=device)
    values_buf = torch.zeros((T, N), device=device)
    valid_buf = torch.ones((T, N), device=device)  # 0: a NEXT_STEP reset step (no transition)

    hooks = list(hooks)
    policy = Policy(agent, config)
    stats: dict[str, float] = {}
    start_time, start_step = time.time(), global_step
    iteration = start_iteration
    try:
        for iteration in range(start_iteration + 1, config.num_iterations + 1):
            iteration_start = time.time()
            if config.anneal_lr:
                fraction_left = 1.0 - (iteration - 1.0) / config.num_iterations
                optimizer.param_groups[0]["lr"] = fraction_left * config.learning_rate

            # --- rollout: num_steps steps of every env, nothing leaves the device ---------
            with torch.no_grad():
                for t in range(T):
                    obs_buf[t] = next_obs
                    logits, value = agent(next_obs)
                    action = sample_actions(logits, sample_rng)
                    logprob = torch.log_softmax(logits, -1).gather(1, action[:, None])[:, 0]
                    next_obs, reward, terminated, truncated, info = env.step(action)
                    done = terminated | truncated
                    valid = None if is_core else (~info["reset_step"]).float()
                    if valid is not None:
                        valid_buf[t] = valid
                    actions_buf[t], logprobs_buf[t], values_buf[t] = action, logprob, value
                    dones_buf[t] = done
                    if config.norm_reward:
                        rewards_buf[t] = reward_norm(reward, done)
                    else:
                        rewards_buf[t] = reward
                    episodes.update(reward, done, info, valid)
                next_value = agent.get_value(next_obs)
                advantages, returns = compute_gae(
                    rewards_buf, values_buf, dones_buf, next_value, config.gamma, config.gae_lambda
                )
            rollout_time = time.time() - iteration_start

            # --- update: update_epochs passes of shuffled minibatches ---------------------
            b_obs = obs_buf.reshape(T * N, *env.observation_shape)
            b_actions, b_logprobs = actions_buf.reshape(-1), logprobs_buf.reshape(-1)
            b_advantages, b_returns = advantages.reshape(-1), returns.reshape(-1)
            b_values, b_valid = values_buf.reshape(-1), valid_buf.reshape(-1)
            # Sums over minibatches, kept on the device: policy, value, entropy losses,
            # approx KL, clip fraction.
            loss_sums = torch.zeros(5, device=device)
            for _epoch in range(config.update_epochs):
                order = torch.randperm(T * N, generator=shuffle_rng, device=device)
                for start in range(0, T * N, config.minibatch_size):
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

            # --- logging: the iteration's scalars cross to the host once ---------------
            global_step += T * N
            num_updates = config.update_epochs * config.num_minibatches
            with torch.no_grad():
                var_returns = b_returns.var()
                explained_var = 1 - (b_returns - b_values).var() / var_returns
            host = torch.cat([loss_sums / num_updates, explained_var[None]]).tolist()
            now = time.time()
            stats = {
                "losses/policy_loss": host[0],
                "losses/value_loss": host[1],
                "losses/entropy": host[2],
                "losses/approx_kl": host[3],
                "losses/clip_fraction": host[4],
                "losses/explained_variance": host[5],
                "charts/learning_rate": optimizer.param_groups[0]["lr"],
                "charts/SPS": (global_step - start_step) / max(now - start_time, 1e-9),
                "perf/rollout_sps": T * N / max(rollout_time, 1e-9),
                "perf/update_seconds": now - iteration_start - rollout_time,
            }
            ep = episodes.take()
            if ep["episodes"] > 0:
                n = ep["episodes"]
                stats["charts/episodic_return"] = ep["return"] / n
                stats["charts/episode_length"] = ep["length"] / n
                stats["charts/coin_rate"] = ep["coin"] / n
                stats["charts/died_rate"] = ep["died"] / n
                stats["charts/timeout_rate"] = ep["timed_out"] / n
                stats["charts/episodes"] = n
                if ep["moved_episodes"] > 0:
                    stats["charts/coin_rate_moved"] = ep["moved_coin"] / ep["moved_episodes"]
            for key, value in stats.items():
                writer.add_scalar(key, value, global_step)

            # --- hooks, checkpoints, progress -------------------------------------------
            previous_step = global_step - T * N
            last = iteration == config.num_iterations
            for hook in hooks:
                every = getattr(hook, "every_steps", None) or config.eval_every
                due = every > 0 and global_step // every > previous_step // every
                if due or last:
                    agent.eval()
                    results = hook(global_step, policy, writer) or {}
                    agent.train()
                    for key, value in results.items():
                        writer.add_scalar(key, value, global_step)
                        stats[key] = float(value)
            every = config.checkpoint_every
            if last or (every > 0 and global_step // every > previous_step // every):
                save_checkpoint(checkpoint_path)
                if config.keep_checkpoints and not last:
                    (run_dir / "checkpoints").mkdir(exist_ok=True)
                    save_checkpoint(run_dir / "checkpoints" / f"step_{global_step:012d}.pt")
            writer.flush()
            progress.update(global_step, stats)
    finally:
        progress.close()
        writer.close()
        if not is_core:
            env.close()
    if iteration == start_iteration and saved is not None:
        print(f"{run_dir}: already trained for {global_step} steps (total_steps reached)")
    return TrainResult(agent, config, global_step, checkpoint_path, stats)


# ======================================================================================
# Helpers: RNG state, progress display, config text
# ======================================================================================


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
        self.coin_rate = math.nan
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
        self.coin_rate = stats.get("charts/coin_rate", self.coin_rate)
        sps = stats.get("charts/SPS", math.nan)
        if self.bar is not None:
            self.bar.update(global_step - self.step)
            self.bar.set_postfix(sps=f"{sps:.0f}", coin_rate=f"{self.coin_rate:.2f}")
        elif time.time() - self.last_print > 30 or global_step >= self.total:
            coin_rate = "-" if math.isnan(self.coin_rate) else f"{self.coin_rate:.2f}"
            print(
                f"step {global_step}/{self.total}  {sps:.0f} steps/s  coin rate {coin_rate}",
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
