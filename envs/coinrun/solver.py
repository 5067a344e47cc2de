"""Solvability witnesses: a batched search for action sequences that collect the coin.

``find_witnesses`` searches, for a batch of level seeds at once, for an action sequence
that takes the agent from the start of the level to the coin under the real physics
(``physics.physics_step``), and ``replay_witnesses`` replays sequences from freshly built
start states.  Only a replayed sequence counts as proof that a level is solvable: the
search is a heuristic and never has to be trusted (``find_witnesses`` replays everything
it returns unless told not to).

The search is a beam search over decision points every ``period`` steps.  Between two
decision points a branch holds one *macro*: a horizontal direction (right, none, left),
with the jump pressed on the first step only or not at all (pressing up for longer
changes nothing: a jump sets the vertical speed once, and pressing up in mid-air does
nothing).  All branches of a level advance in lockstep, so they share the step count
and with it the walking enemies' positions.  Branches that die are dropped, branches in
the same quantized (x, y, vx, vy) cell are merged, and each level keeps the ``beam``
branches furthest to the right plus the ``grounded`` best among those standing on
something (places to retry from when every branch ahead is falling to its death).  A
level stops as soon as one branch touches the coin.

Each pass only sees the levels the previous passes could not solve, and later passes
are wider and finer, so the cost follows how hard the levels are: a narrow first pass
solves about 90% of the levels.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from .config import CoinRunConfig
from .core import start_states as core_start_states
from .physics import physics_step
from .state import AGENT_RX, AGENT_RY, GRID_H, GRID_W, EnvState

# Action codes: action = 3 * (vx + 1) + (vy + 1), vx, vy in {-1, 0, 1}.
LEFT, LEFT_JUMP = 1, 2
STAND, JUMP = 4, 5
RIGHT, RIGHT_JUMP = 7, 8


@dataclass(frozen=True)
class SearchPass:
    """The settings of one round of the beam search (see the module docstring)."""

    beam: int  # branches kept per level at every decision point, furthest right first
    period: int  # steps between decision points
    grounded: int = 0  # extra branches kept among those standing on something
    directions: tuple[int, ...] = (1, 0, -1)  # horizontal directions a macro may hold
    # A level is given up (for this pass) after this many steps per column up to its
    # end plus ``extra_steps``; stuck branches would otherwise run to ``max_steps``.
    # (Found witnesses take about 2 steps per column, at most about 3.5.)
    steps_per_column: float = 4.0
    extra_steps: int = 40


# Cheap first; wider and finer only for the levels that are still unsolved.  On 10,000
# hard-mode levels the first pass solves ~90%, the second nearly all of the rest.
DEFAULT_PASSES = (
    SearchPass(beam=3, period=4, grounded=1, directions=(1, 0)),
    SearchPass(beam=8, period=3, grounded=4),
    SearchPass(beam=16, period=2, grounded=8),
    SearchPass(beam=64, period=2, grounded=32, steps_per_column=8.0),
    SearchPass(beam=256, period=1, grounded=64, steps_per_column=10.0),
)


def start_states(level_seeds: torch.Tensor, config: CoinRunConfig) -> EnvState:
    """Fresh episode states for the given level seeds (see ``core.start_states``)."""
    return core_start_states(level_seeds, config)


def _lean(s: EnvState) -> EnvState:
    """A copy of ``s`` that is cheap to clone row by row, for the search only.

    The physics reads the level through the per-column bit masks, never the tile grid,
    so the grid becomes an empty ``[N, 0, 0]`` tensor (any use of it would fail loudly);
    enemy slots after the last one in use anywhere in the batch are cut off (unused
    slots never touch the agent).  Witnesses are replayed on full states anyway.
    """
    in_use = s.enemy_alive.any(dim=0).nonzero()
    used = int(in_use.max()) + 1 if in_use.numel() else 1
    out = {}
    for f in fields(s):
        v = getattr(s, f.name)
        if f.name == "grid":
            v = torch.empty((v.shape[0], 0, 0), dtype=v.dtype, device=v.device)
        elif f.name.startswith("enemy_"):
            v = v[:, :used]
        out[f.name] = v.contiguous()
    return EnvState(**out)


def _macro_actions(directions: tuple[int, ...], device) -> tuple[torch.Tensor, ...]:
    """Per macro: the first step's action, the later steps' action and its kind.

    Kinds: 0 no vertical input, 1 jump on the first step, 2 hold down (drops through
    crates, which otherwise hold an agent falling onto them).
    """
    first, rest, kinds = [], [], []
    for kind, vy_first, vy_rest in ((0, 0, 0), (1, 1, 0), (2, -1, -1)):
        for h in directions:
            first.append(3 * (h + 1) + vy_first + 1)
            rest.append(3 * (h + 1) + vy_rest + 1)
            kinds.append(kind)
    t = lambda v: torch.tensor(v, device=device)  # noqa: E731
    return t(first), t(rest), t(kinds)


def _above_crate(s: EnvState) -> torch.Tensor:
    """Whether a crate lies anywhere below the agent's feet in the columns it spans."""
    rows = torch.arange(s.num_envs, device=s.device)
    cols = s.crate_bits
    left = (s.agent_x - AGENT_RX * 0.98).floor().long().clamp(0, GRID_W - 1)
    right = (s.agent_x + AGENT_RX * 0.98).floor().long().clamp(0, GRID_W - 1)
    bits = cols[rows, left] | cols[rows, right]
    feet = (s.agent_y - AGENT_RY + 1e-3).floor().long().clamp(0, GRID_H - 2)
    return (bits & ((1 << feet) - 1)) != 0


def _rank_in_level(lv: torch.Tensor, num_levels: int, weight: torch.Tensor | None = None):
    """For rows sorted by level: the (weighted) count of earlier rows of the same level."""
    w = torch.ones_like(lv) if weight is None else weight
    before = torch.cumsum(w, 0) - w
    totals = torch.zeros(num_levels, dtype=w.dtype, device=lv.device).index_add_(0, lv, w)
    starts = torch.cumsum(totals, 0) - totals
    return before - starts[lv]


def _select(level, goal, x, y, vx, vy, beam, grounded, num_levels) -> torch.Tensor:
    """Indices of the branches to keep: one per quantized state, few per level.

    Per level: the ``beam`` branches closest to the coin's x (``goal``; ties: higher,
    then faster toward it) and the ``grounded`` closest among those not moving
    vertically (standing).  With the coin at the end, closest is furthest right.
    """
    toward = torch.where(goal >= x, 1.0, -1.0)
    score = (x - goal).abs() * -4096 + y * 16 + vx * toward
    cell = (level * 256 + (x * 4).floor().long()) * 256 + (y * 4).floor().long()
    cell = cell * 1024 + ((vx * 8).round().long() + 8) * 64 + (vy * 4).round().long() + 16
    # Best first, then grouped by cell (stable sorts keep the best at each group's head).
    order = torch.argsort(score, descending=True, stable=True)
    order = order[torch.argsort(cell[order], stable=True)]
    head = torch.ones_like(order, dtype=torch.bool)
    head[1:] = cell[order[1:]] != cell[order[:-1]]
    order = order[head]
    # Best first within each level.
    order = order[torch.argsort(score[order], descending=True, stable=True)]
    order = order[torch.argsort(level[order], stable=True)]
    lv = level[order]
    keep = _rank_in_level(lv, num_levels) < beam
    if grounded:
        ground = vy[order] == 0
        keep |= ground & (_rank_in_level(lv, num_levels, ground.long()) < grounded)
    return order[keep]


def _search_pass(
    start: EnvState, config: CoinRunConfig, max_steps: int, p: SearchPass
) -> list[list[int] | None]:
    """One beam search over all levels of ``start`` (a lean state, one row per level)."""
    n = start.num_envs
    device = start.device
    first, rest, kinds = _macro_actions(p.directions, device)
    goal = start.coin_x.float() + 0.5

    state = start
    level = torch.arange(n, device=device)  # the level of every frontier branch
    solved = torch.zeros(n, dtype=torch.bool, device=device)
    budget = (start.end_x.float() * p.steps_per_column + p.extra_steps).long()
    # Per decision depth: each kept branch's parent (its index in the previous depth's
    # frontier) and macro, to rebuild the action sequences at the end.
    parents: list[torch.Tensor] = []
    macros: list[torch.Tensor] = []
    found: dict[int, tuple[int, int, int, int]] = {}  # level -> (depth, parent, macro, t)

    for depth in range(-(-max_steps // p.period)):
        if level.numel() == 0:
            break
        # Every branch tries every macro, except the jumping ones where it moves
        # vertically (in mid-air a jump is the same as none) and the dropping ones
        # where no crate is below it (pressing down does nothing else).
        allowed = (
            (kinds == 0)[None, :]
            | ((kinds == 1)[None, :] & (state.agent_vy == 0)[:, None])
            | ((kinds == 2)[None, :] & _above_crate(state)[:, None])
        )
        parent, macro = allowed.nonzero(as_tuple=True)
        child = state.index(parent)
        child_level = level[parent]
        alive = torch.ones(parent.numel(), dtype=torch.bool, device=device)
        coin_step = torch.full((parent.numel(),), -1, dtype=torch.int64, device=device)
        for t in range(min(p.period, max_steps - depth * p.period)):
            ev = physics_step(child, first[macro] if t == 0 else rest[macro], config)
            coin_step = torch.where(alive & ev.coin_collected, t, coin_step)
            alive &= ~(ev.terminated | ev.truncated)

        for i in (coin_step >= 0).nonzero().squeeze(1).tolist():
            lv = int(child_level[i])
            if lv not in found:
                found[lv] = (depth, int(parent[i]), int(macro[i]), int(coin_step[i]))
                solved[lv] = True

        in_time = budget[child_level] > (depth + 1) * p.period
        idx = (alive & in_time & ~solved[child_level]).nonzero().squeeze(1)
        sel = idx[
            _select(
                child_level[idx],
                goal[child_level[idx]],
                child.agent_x[idx],
                child.agent_y[idx],
                child.agent_vx[idx],
                child.agent_vy[idx],
                p.beam,
                p.grounded,
                n,
            )
        ]
        state = child.index(sel)
        level = child_level[sel]
        parents.append(parent[sel])
        macros.append(macro[sel])

    first_l, rest_l = first.tolist(), rest.tolist()
    out: list[list[int] | None] = [None] * n
    for lv, (depth, par, mac, t) in found.items():
        chunks = [[first_l[mac]] + [rest_l[mac]] * t]
        for d in range(depth - 1, -1, -1):
            m = int(macros[d][par])
            chunks.append([first_l[m]] + [rest_l[m]] * (p.period - 1))
            par = int(parents[d][par])
        out[lv] = [a for chunk in reversed(chunks) for a in chunk]
    return out


def replay_states(
    start: EnvState, witnesses: list[list[int] | None], config: CoinRunConfig | None = None
) -> torch.Tensor:
    """Replay witness ``i`` from row ``i`` of the fresh start states ``start`` (not
    modified); True where the actions collect the coin.

    A sequence proves its level solvable when the episode's first terminal event is
    collecting the coin: no death and no time-out before it.  ``None`` replays as False.
    """
    config = config or CoinRunConfig()
    device = start.device
    ok = torch.zeros(len(witnesses), dtype=torch.bool, device=device)
    rows = [i for i, w in enumerate(witnesses) if w]
    if not rows:
        return ok
    length = max(len(witnesses[i]) for i in rows)
    plan = torch.full((len(rows), length), STAND, dtype=torch.int64)
    for j, i in enumerate(rows):
        plan[j, : len(witnesses[i])] = torch.as_tensor(witnesses[i], dtype=torch.int64)
    plan = plan.to(device)
    lengths = torch.tensor([len(witnesses[i]) for i in rows], device=device)
    index = torch.tensor(rows, device=device)  # the witness of every replayed row
    s = start.index(index)
    running = torch.ones(len(rows), dtype=torch.bool, device=device)
    for t in range(length):
        ev = physics_step(s, plan[:, t], config)
        ok[index[running & ev.coin_collected]] = True
        running &= ~(ev.terminated | ev.truncated) & (lengths > t + 1)
        left = int(running.sum())
        if left == 0:
            break
        if left < 0.75 * running.numel():  # drop finished rows now and then
            keep = running.nonzero().squeeze(1)
            s, plan, lengths, index = s.index(keep), plan[keep], lengths[keep], index[keep]
            running = running[keep]
    return ok


def replay_witnesses(
    level_seeds: torch.Tensor,
    witnesses: list[list[int] | None],
    config: CoinRunConfig | None = None,
) -> torch.Tensor:
    """Replay each level's actions from a freshly generated start state (``start_states``)
    with ``physics_step``; True where they collect the coin (see ``replay_states``)."""
    config = config or CoinRunConfig()
    return replay_states(start_states(torch.as_tensor(level_seeds), config), witnesses, config)


def replay(level_seed: int, actions: list[int], config: CoinRunConfig | None = None) -> bool:
    """Whether ``actions`` collect the coin of level ``level_seed`` from a fresh start."""
    seeds = torch.tensor([int(level_seed)], dtype=torch.int64)
    return bool(replay_witnesses(seeds, [list(actions)], config)[0])


def search_states(
    start: EnvState,
    config: CoinRunConfig | None = None,
    max_steps: int = 400,
    passes: tuple[SearchPass, ...] = DEFAULT_PASSES,
    chunk_size: int = 4096,
) -> list[list[int] | None]:
    """Search a coin-collecting action sequence from every row of ``start`` (not modified).

    The rows may come from different level configurations (``concat_states``): only
    ``config.max_episode_steps`` and ``config.end_terminates`` matter to the physics.
    Nothing is verified here (see ``replay_states``).  Every ``physics_step`` call costs
    a fixed overhead, so one call with many levels is much cheaper than many small ones;
    ``chunk_size`` levels at a time bound the memory.
    """
    config = config or CoinRunConfig()
    max_steps = min(max_steps, config.max_episode_steps)
    n = start.num_envs
    out: list[list[int] | None] = [None] * n
    for lo in range(0, n, chunk_size):
        todo = list(range(lo, min(n, lo + chunk_size)))
        for p in passes:
            if not todo:
                break
            rows = torch.tensor(todo, device=start.device)
            found = _search_pass(_lean(start.index(rows)), config, max_steps, p)
            for i, w in zip(todo, found):
                out[i] = w
            todo = [i for i, w in zip(todo, found) if w is None]
    return out


def find_witnesses(
    level_seeds: torch.Tensor,
    config: CoinRunConfig | None = None,
    max_steps: int = 400,
    passes: tuple[SearchPass, ...] = DEFAULT_PASSES,
    device: str | torch.device = "cpu",
    verify: bool = True,
) -> list[list[int] | None]:
    """An action sequence that collects the coin, for every level seed (or ``None``).

    The levels are those of ``config`` (difficulty mode and coin placement).  With
    ``verify`` every sequence found is replayed from a fresh start state and kept only
    if the replay collects the coin, so whatever is returned is a witness.

    The search steps many small batches: on the CPU it runs several times faster with
    ``torch.set_num_threads(1)`` than with intra-op threads.
    """
    config = config or CoinRunConfig()
    seeds = torch.as_tensor(level_seeds).to(device=device, dtype=torch.int64).reshape(-1)
    out = search_states(start_states(seeds, config), config, max_steps, passes)
    if verify:
        ok = replay_witnesses(seeds, out, config).tolist()
        out = [w if good else None for w, good in zip(out, ok)]
    return out


def concat_states(states: list[EnvState]) -> EnvState:
    """The rows of several states (e.g. levels of different configurations) as one."""
    return EnvState(
        **{f.name: torch.cat([getattr(s, f.name) for s in states]) for f in fields(EnvState)}
    )
