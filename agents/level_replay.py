"""Level curricula for the PPO: robust prioritized level replay (PLR-perp).

``PPOConfig.curriculum='dr'`` (domain randomization, the default) plays every episode on
a new level of the training distribution; this module is then not used at all.  With
``'plr'``, :class:`LevelReplay` keeps a buffer of level seeds with a score each and
decides, whenever an environment's episode ends, what it plays next (Jiang et al. 2021,
"Prioritized Level Replay" and "Replay-Guided Adversarial Environment Design"):

* with probability ``plr_replay_prob``, once ``plr_min_fill`` of the buffer is filled, a
  **replay**: a buffer level drawn from ``P = (1 - rho) P_S + rho P_C``, where
  ``P_S ∝ h(S_i) ** (1 / beta)`` (``h`` = 1 / rank of the score, or the score itself for
  ``'power'``) and ``P_C ∝ c - C_i`` (staleness: ``c`` episodes started so far, ``C_i``
  the count when level ``i`` was last started);
* otherwise a **new level**: the next level of the environment's own sequence, exactly
  the level DR would play there (same seeds, same ``rand_fraction``: whether a goal is
  moved is a property of the level seed, so the curriculum only chooses among levels DR
  plays and never moves a goal DR would not).

Design: the decision is made **per environment episode**, as in the original PLR code
(facebookresearch/level-replay samples at each episode end), not per rollout as in
facebookresearch/dcd.  Our rollouts are short (64 steps in the quick profile) against
episodes of up to 1000 steps, so ending every episode at the rollout's end, as dcd does,
would change the game.  Each transition carries its episode's kind: the PPO update
weights transitions of new-level episodes by zero (all of its losses: policy, value and
entropy, the way dcd's ``no_exploratory_grad_updates`` discards a whole new-level
update), so **only replayed levels produce gradients**; new levels are played only to be
scored.  A minibatch without replayed transitions has zero gradients (Adam may still move
the weights by its momentum, which holds only gradients of replayed levels; with no
replay at all the weights never move).

Scores (``plr_score``), per episode, averaged over its steps (episodes that span
rollouts are merged, step-weighted, as both reference codes do); a new score replaces
the old:

* ``'pvl'`` positive value loss: mean of ``max(A_t, 0)`` (GAE advantages, in the
  trainer's normalized reward units);
* ``'maxmc'``: mean of ``R_max - V(s_t)``, ``R_max`` the highest undiscounted return
  seen on the level (raw reward units: the value is scaled back by the reward
  normalizer's current scale);
* ``'oracle'``: ``R* - G``, the best discounted return a solver finds for the level
  (:func:`oracle_returns`) minus the episode's discounted return (raw units), the RLC
  2025 paper's oracle regret.

A finished new level enters the buffer in a free slot, or, once the buffer is full, in
place of the slot with the lowest replay probability if its score is at least that
slot's (dcd's rule).  The buffer lives on the CPU (it is small and sampled element by
element); what is recorded per step stays on the training device.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import torch

from coinrun_mg.envs.events import events_of
from coinrun_mg.files import atomic_write_text

from .config import PPOConfig

BUFFER_CSV = "level_buffer.csv"  # the buffer, written with every checkpoint
HISTORY_CSV = "level_replay.csv"  # one row of plr/* statistics per iteration
GOAL_REWARD = 10.0  # the reward of the goal (coin, cheese) in every game of the family


def replay_probabilities(
    scores: torch.Tensor,
    last_started: torch.Tensor,
    episodes_started: int,
    prioritization: str,
    temperature: float,
    staleness_coef: float,
) -> torch.Tensor:
    """The replay distribution over buffer levels (float64, sums to 1):
    ``(1 - staleness_coef) * P_S + staleness_coef * P_C`` (see the module docstring)."""
    scores = scores.double()
    if prioritization == "rank":
        order = torch.argsort(scores, descending=True, stable=True)
        rank = torch.empty_like(scores)
        rank[order] = torch.arange(1, len(scores) + 1, dtype=torch.float64)
        weight = (1.0 / rank) ** (1.0 / temperature)
    else:
        weight = scores.clamp(min=0.0) ** (1.0 / temperature)
    p_score = _normalized(weight)
    p_stale = _normalized((episodes_started - last_started).double())
    return (1.0 - staleness_coef) * p_score + staleness_coef * p_stale


def _normalized(weight: torch.Tensor) -> torch.Tensor:
    """``weight / weight.sum()``, uniform when every weight is zero."""
    total = weight.sum()
    return weight / total if total > 0 else torch.full_like(weight, 1.0 / len(weight))


def oracle_returns(level_seeds: torch.Tensor, config: PPOConfig) -> torch.Tensor:
    """float64 ``[K]`` (CPU): the best discounted return known for each level, the goal's
    reward discounted by the steps of the shortest way a solver finds to it (0 where it
    finds none within the episode's step limit).

    Maze: breadth-first shortest paths (``envs/maze/paths.py``), exact.  CoinRun: the
    beam search of ``envs/coinrun/solver.py``, which finds *a* way, not always the
    shortest, so ``R*`` can be a little low; a level it cannot solve counts as 0.
    """
    seeds = level_seeds.to("cpu", torch.int64)
    if config.game == "maze":
        from coinrun_mg.envs.maze.core import start_states
        from coinrun_mg.envs.maze.paths import search_distances

        s = start_states(seeds, config.env_config())
        (steps,) = search_distances(s.wall, s.agent_x, s.agent_y, [(s.cheese_x, s.cheese_y)])
    else:
        from coinrun_mg.envs.coinrun.solver import find_witnesses

        limit = config.max_episode_steps
        found = find_witnesses(seeds, config.env_config(), max_steps=limit)
        steps = torch.tensor([len(w) if w else -1 for w in found], dtype=torch.int64)
    solved = (steps > 0) & (steps <= config.max_episode_steps)
    best = GOAL_REWARD * config.gamma ** (steps.clamp(min=1) - 1).double()
    return torch.where(solved, best, torch.zeros_like(best))


def segment_sums(
    x: torch.Tensor, dones: torch.Tensor, carry: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sums of ``x`` (``[T, N]``) over each episode segment of every environment.

    Returns ``sums`` ``[T + 1, N]`` (float64): row ``k`` of column ``n`` sums the steps of
    env ``n`` after its ``k``-th episode end in this rollout; row 0 also holds ``carry``
    (``[N]``, what that episode gathered in earlier rollouts).  The episode that ends at
    step ``t`` is row ``dones[:t, n].sum()``; the one still going is row
    ``dones[:, n].sum()``.
    """
    steps, num_envs = dones.shape
    segment = (dones.cumsum(0) - dones).long()  # episode ends before step t
    flat = (segment * num_envs + torch.arange(num_envs, device=dones.device)).reshape(-1)
    sums = torch.zeros((steps + 1) * num_envs, dtype=torch.float64, device=dones.device)
    sums.index_add_(0, flat, x.reshape(-1).double())
    sums[:num_envs] += carry
    return sums.reshape(steps + 1, num_envs), segment


class LevelReplay:
    """Robust PLR's level buffer and its per-environment bookkeeping (module docstring).

    The trainer calls :meth:`begin` once after the environments' first reset,
    :meth:`record_step` and :meth:`start_next_levels` at every rollout step,
    :meth:`score_rollout` after the rollout's advantages, :meth:`stats` for logging;
    :meth:`state_dict` goes into checkpoints.
    """

    def __init__(self, config: PPOConfig, device: torch.device):
        self.config = config
        self.device = device
        self.moved_key = events_of(config.game).moved
        size = config.plr_buffer_size
        # The buffer (CPU): one slot per level; seed -1 marks an empty slot.
        self.seeds = torch.full((size,), -1, dtype=torch.int64)
        self.scores = torch.zeros(size, dtype=torch.float64)
        self.last_started = torch.zeros(size, dtype=torch.int64)  # C_i
        self.replays = torch.zeros(size, dtype=torch.int64)  # times replayed
        self.moved = torch.zeros(size, dtype=torch.bool)  # the level's goal is moved
        self.max_return = torch.zeros(size, dtype=torch.float64)  # MaxMC's R_max
        self.oracle = torch.full((size,), math.nan, dtype=torch.float64)  # R*, when known
        self.slot_of: dict[int, int] = {}
        self.episodes_started = 0  # c
        self.rng = torch.Generator().manual_seed(config.seed + 2)  # replay coins and draws
        # Levels a capped training set (num_levels > 0) can hold: the fill gate's base.
        levels = config.num_levels or size
        self.capacity = min(size, levels)
        steps, n = config.num_steps, config.num_envs
        # The current episode of every environment (training device).
        self.env_seed = torch.zeros(n, dtype=torch.int64, device=device)
        self.env_start = torch.zeros(n, dtype=torch.int64, device=device)
        self.env_replay = torch.zeros(n, dtype=torch.bool, device=device)
        self.env_return = torch.zeros(n, dtype=torch.float64, device=device)
        self.env_discounted = torch.zeros(n, dtype=torch.float64, device=device)
        self.env_discount = torch.ones(n, dtype=torch.float64, device=device)
        self.carry_sum = torch.zeros(n, dtype=torch.float64, device=device)
        self.carry_steps = torch.zeros(n, dtype=torch.float64, device=device)
        # Per step of the rollout: which episode each transition belongs to, and the
        # returns of the episodes that end there.
        self.step_seed = torch.zeros((steps, n), dtype=torch.int64, device=device)
        self.step_start = torch.zeros_like(self.step_seed)
        self.step_replay = torch.zeros((steps, n), dtype=torch.bool, device=device)
        self.step_moved = torch.zeros_like(self.step_replay)
        self.step_return = torch.zeros((steps, n), dtype=torch.float64, device=device)
        self.step_discounted = torch.zeros_like(self.step_return)
        self.finished: dict[str, float] = {}  # the last rollout's episode counts

    # --- the replay distribution ------------------------------------------------------
    def filled(self) -> torch.Tensor:
        return self.seeds >= 0

    def probabilities(self) -> torch.Tensor:
        """The replay probability of every slot (0 for empty slots)."""
        filled = self.filled()
        out = torch.zeros(len(self.seeds), dtype=torch.float64)
        if filled.any():
            c = self.config
            out[filled] = replay_probabilities(
                self.scores[filled],
                self.last_started[filled],
                self.episodes_started,
                c.plr_prioritization,
                c.plr_temperature,
                c.plr_staleness_coef,
            )
        return out

    def _replay_coins(self, count: int) -> list[bool]:
        """For ``count`` episode starts: replay (True) or a new level."""
        filled = int(self.filled().sum())
        draws = torch.rand(count, generator=self.rng, dtype=torch.float64)
        if filled == 0 or filled < self.config.plr_min_fill * self.capacity:
            return [False] * count
        return (draws < self.config.plr_replay_prob).tolist()

    # --- during the rollout -----------------------------------------------------------
    def begin(self, env) -> None:
        """Take the environments' first episodes (new levels) after a fresh reset."""
        n = self.config.num_envs
        self.env_seed = env.state.level_seed.clone()
        self.env_start = torch.arange(1, n + 1, dtype=torch.int64, device=self.device)
        self.episodes_started = n

    def record_step(self, t: int, reward: torch.Tensor, done: torch.Tensor, info) -> torch.Tensor:
        """Record step ``t`` of every environment; returns its training weight: 1 for a
        transition of a replayed level, 0 for a new level (no gradient)."""
        self.step_seed[t], self.step_start[t] = self.env_seed, self.env_start
        self.step_replay[t], self.step_moved[t] = self.env_replay, info[self.moved_key]
        reward = reward.double()
        self.env_return += reward
        self.env_discounted += self.env_discount * reward
        self.step_return[t], self.step_discounted[t] = self.env_return, self.env_discounted
        self.env_return = torch.where(done, 0.0, self.env_return)
        self.env_discounted = torch.where(done, 0.0, self.env_discounted)
        self.env_discount = torch.where(done, 1.0, self.env_discount * self.config.gamma)
        return self.step_replay[t].float()

    def start_next_levels(self, env, done: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """Choose the next level of every environment whose episode ended: the core has
        already started its new level there; a replay replaces it by a buffer level.
        Returns ``next_obs`` with the replayed environments' first observations."""
        index = done.nonzero().squeeze(1)
        if index.numel() == 0:
            return next_obs
        coins = self._replay_coins(index.numel())
        starts, seeds = [], []
        for replay in coins:  # one at a time: each draw sees the staleness so far
            self.episodes_started += 1
            starts.append(self.episodes_started)
            if replay:
                slot = int(torch.multinomial(self.probabilities(), 1, generator=self.rng))
                self.last_started[slot] = self.episodes_started
                self.replays[slot] += 1
                seeds.append(int(self.seeds[slot]))
        replayed = torch.tensor(coins, dtype=torch.bool, device=self.device)
        self.env_replay[index] = replayed
        self.env_start[index] = torch.tensor(starts, dtype=torch.int64, device=self.device)
        if seeds:
            where = index[replayed]
            env.start_levels(torch.tensor(seeds, dtype=torch.int64), where)
            next_obs = next_obs.index_copy(0, where, env.observe(where))
        self.env_seed[index] = env.state.level_seed[index]
        return next_obs

    # --- after the rollout -------------------------------------------------------------
    @torch.no_grad()
    def score_rollout(
        self,
        values: torch.Tensor,
        advantages: torch.Tensor,
        dones: torch.Tensor,
        value_scale: float,
    ) -> None:
        """Score the episodes that ended in this rollout and update the buffer."""
        kind = self.config.plr_score
        x = advantages.clamp(min=0.0) if kind == "pvl" else values * value_scale
        sums, segment = segment_sums(x, dones, self.carry_sum)
        counts, _ = segment_sums(torch.ones_like(x), dones, self.carry_steps)
        t, n = dones.nonzero(as_tuple=True)  # episode ends, in time order
        k = segment[t, n]
        episodes = {
            "seed": self.step_seed[t, n],
            "start": self.step_start[t, n],
            "mean": sums[k, n] / counts[k, n],
            "return": self.step_return[t, n],
            "discounted": self.step_discounted[t, n],
            "replay": self.step_replay[t, n],
            "moved": self.step_moved[t, n],
        }
        episodes = {key: v.cpu() for key, v in episodes.items()}  # one transfer each
        still = dones.sum(0).long()  # the segment of each env's unfinished episode
        columns = torch.arange(dones.shape[1], device=dones.device)
        self.carry_sum, self.carry_steps = sums[still, columns], counts[still, columns]
        self._update_buffer(episodes)
        self.finished = _episode_counts(episodes)

    def _update_buffer(self, episodes: dict[str, torch.Tensor]) -> None:
        oracle = None
        if self.config.plr_score == "oracle":
            oracle = self._oracle_of(episodes["seed"])
        for i, seed in enumerate(episodes["seed"].tolist()):
            slot = self.slot_of.get(seed)
            best = float(episodes["return"][i])
            if slot is not None:
                best = max(best, float(self.max_return[slot]))
            if self.config.plr_score == "pvl":
                score = float(episodes["mean"][i])
            elif self.config.plr_score == "maxmc":
                score = best - float(episodes["mean"][i])
            else:
                score = float(oracle[i]) - float(episodes["discounted"][i])
            if slot is None:
                slot = self._insert(seed, score, int(episodes["start"][i]))
                if slot is None:
                    continue
                self.moved[slot] = bool(episodes["moved"][i])
                if oracle is not None:
                    self.oracle[slot] = float(oracle[i])
            self.scores[slot], self.max_return[slot] = score, best

    def _oracle_of(self, seeds: torch.Tensor) -> torch.Tensor:
        """R* of each seed: the buffer's cached value, else the solver's (in one batch)."""
        out = torch.full((len(seeds),), math.nan, dtype=torch.float64)
        for i, seed in enumerate(seeds.tolist()):
            if seed in self.slot_of:
                out[i] = self.oracle[self.slot_of[seed]]
        todo = out.isnan()
        if todo.any():
            out[todo] = oracle_returns(seeds[todo], self.config)
        return out

    def _insert(self, seed: int, score: float, started: int) -> int | None:
        """Put a new level in a free slot, or in place of the least likely replay if its
        score is at least that level's; the slot, or None when it does not get in."""
        empty = (~self.filled()).nonzero()
        if len(empty):
            slot = int(empty[0])
        else:
            slot = int(self.probabilities().argmin())
            if score < float(self.scores[slot]):
                return None
            del self.slot_of[int(self.seeds[slot])]
        self.seeds[slot], self.last_started[slot], self.replays[slot] = seed, started, 0
        self.oracle[slot] = math.nan
        self.slot_of[seed] = slot
        return slot

    # --- what a researcher inspects ---------------------------------------------------
    def stats(self) -> dict[str, float]:
        """``plr/*`` scalars: the buffer's fill, share of goal-moved levels, score
        distribution and replay counts; the last rollout's share of trained transitions and
        its finished episodes by kind."""
        filled = self.filled()
        out = {
            "plr/buffer_fill": float(filled.sum()) / self.capacity,
            # the share of the last rollout's transitions that trained (replayed levels)
            "plr/trained_share": float(self.step_replay.double().mean()),
            **self.finished,
        }
        if filled.any():
            scores = self.scores[filled]
            q = torch.quantile(scores, torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64))
            stale = (self.episodes_started - self.last_started[filled]).double()
            out.update(
                {
                    "plr/buffer_moved_share": float(self.moved[filled].double().mean()),
                    "plr/score_mean": float(scores.mean()),
                    "plr/score_p10": float(q[0]),
                    "plr/score_p50": float(q[1]),
                    "plr/score_p90": float(q[2]),
                    "plr/score_max": float(scores.max()),
                    "plr/staleness_mean": float(stale.mean()),
                    "plr/replays_mean": float(self.replays[filled].double().mean()),
                    "plr/replays_max": float(self.replays[filled].max()),
                }
            )
        return out

    def log_scores(self, writer, step: int) -> None:
        """The buffer's score distribution as a TensorBoard histogram ``plr/scores``."""
        filled = self.filled()
        if filled.any():
            writer.add_histogram("plr/scores", self.scores[filled], step)

    def buffer_rows(self) -> list[dict[str, Any]]:
        """One row per filled slot, highest replay probability first."""
        p = self.probabilities()
        rows = []
        for slot in sorted(self.slot_of.values(), key=lambda s: -float(p[s])):
            rows.append(
                {
                    "slot": slot,
                    "level_seed": int(self.seeds[slot]),
                    "goal_moved": bool(self.moved[slot]),
                    "score": float(self.scores[slot]),
                    "replay_probability": float(p[slot]),
                    "staleness": self.episodes_started - int(self.last_started[slot]),
                    "replays": int(self.replays[slot]),
                    "max_return": float(self.max_return[slot]),
                }
            )
        return rows

    def write_buffer(self, run_dir: Path) -> None:
        """``level_buffer.csv`` in the run directory (written with each checkpoint)."""
        rows = self.buffer_rows()
        text = io.StringIO()
        fields = list(rows[0]) if rows else ["slot", "level_seed"]
        writer = csv.DictWriter(text, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(run_dir / BUFFER_CSV, text.getvalue())

    # --- checkpoints ------------------------------------------------------------------
    _BUFFER = ("seeds", "scores", "last_started", "replays", "moved", "max_return", "oracle")
    _ENVS = ("env_seed", "env_start", "env_replay", "env_return", "env_discounted")
    _ENVS2 = ("env_discount", "carry_sum", "carry_steps")

    def state_dict(self) -> dict[str, Any]:
        """Tensors and ints only (checkpoints load with ``weights_only=True``)."""
        out = {name: getattr(self, name) for name in (*self._BUFFER, *self._ENVS, *self._ENVS2)}
        out["episodes_started"] = self.episodes_started
        out["rng"] = self.rng.get_state()
        return out

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        for name in self._BUFFER:
            if saved[name].shape != getattr(self, name).shape:
                raise ValueError(
                    f"the checkpoint's level buffer holds {saved[name].shape[0]} levels; "
                    f"plr_buffer_size={self.config.plr_buffer_size} (a different config)"
                )
            setattr(self, name, saved[name].to("cpu", copy=True))
        for name in (*self._ENVS, *self._ENVS2):
            setattr(self, name, saved[name].to(self.device, copy=True))
        self.episodes_started = int(saved["episodes_started"])
        self.rng.set_state(saved["rng"].cpu())
        self.slot_of = {int(s): i for i, s in enumerate(self.seeds.tolist()) if s >= 0}


def _episode_counts(episodes: dict[str, torch.Tensor]) -> dict[str, float]:
    """The finished episodes of a rollout: how many were replays, and the share of
    goal-moved levels among replayed and among new levels."""
    replay, moved = episodes["replay"], episodes["moved"]
    out = {"plr/episodes_replayed": float(replay.sum()), "plr/episodes_new": float((~replay).sum())}
    if replay.any():
        out["plr/replayed_moved_share"] = float(moved[replay].double().mean())
    if (~replay).any():
        out["plr/new_moved_share"] = float(moved[~replay].double().mean())
    return out


# The columns of level_replay.csv: the plr/* scalars without their prefix.
HISTORY_COLUMNS = (
    "global_step",
    "buffer_fill",
    "trained_share",
    "buffer_moved_share",
    "score_mean",
    "score_p10",
    "score_p50",
    "score_p90",
    "score_max",
    "staleness_mean",
    "replays_mean",
    "replays_max",
    "episodes_replayed",
    "episodes_new",
    "replayed_moved_share",
    "new_moved_share",
)


def append_history(run_dir: Path, step: int, stats: dict[str, float]) -> None:
    """Append the iteration's ``plr/*`` scalars to ``level_replay.csv`` (empty cells for
    those not defined yet, e.g. before the first replay)."""
    path = run_dir / HISTORY_CSV
    row = {"global_step": step, **{k[4:]: v for k, v in stats.items() if k.startswith("plr/")}}
    new = not path.exists()
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(
            f, fieldnames=HISTORY_COLUMNS, extrasaction="ignore", lineterminator="\n"
        )
        if new:
            writer.writeheader()
        writer.writerow(row)


def trim_history(run_dir: Path, step: int) -> None:
    """Drop the rows after ``step`` from ``level_replay.csv`` (a resumed run's history
    then continues from its checkpoint, as TensorBoard's purge_step does)."""
    path = run_dir / HISTORY_CSV
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    kept = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) <= step]
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows(kept)
    atomic_write_text(path, text.getvalue())
