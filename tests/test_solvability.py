"""Every generated level is solvable, proven by witnesses replayed under the real physics.

For each level a beam search (``envs/coinrun/solver.py``) looks for an action sequence that
collects the coin; every sequence is then replayed from a freshly generated start state
with ``physics_step``, and the level counts as solvable only if the episode's first
terminal event is the coin.  The search is a heuristic: only the replay counts.

The default run covers the level seeds that environments draw: 1,000 hard-mode levels of
each difficulty, easy-mode levels and moved coins (both placements).  All of them are
searched and replayed as one batch, because a physics step costs about the same for one
level as for a thousand.  ``-m slow`` adds a sweep over 30,000 more levels.
"""

from __future__ import annotations

import pytest
import torch

from coinrun_mg.envs.coinrun.ascii import state_to_ascii
from coinrun_mg.envs.coinrun.config import CoinRunConfig
from coinrun_mg.envs.coinrun.core import level_seeds_for
from coinrun_mg.envs.coinrun.levels import generate_levels
from coinrun_mg.envs.coinrun.physics import physics_step
from coinrun_mg.envs.coinrun.solver import (
    RIGHT,
    RIGHT_JUMP,
    STAND,
    concat_states,
    replay,
    replay_states,
    replay_witnesses,
    search_states,
    start_states,
)

HARD = CoinRunConfig(distribution_mode="hard")
EASY = CoinRunConfig(distribution_mode="easy")
MOVED_SECTION = CoinRunConfig(rand_fraction=1.0, coin_placement="section")
MOVED_ANYWHERE = CoinRunConfig(rand_fraction=1.0, coin_placement="anywhere")

# name: (config, levels per difficulty, first environment key)
SUITES = {
    "hard": (HARD, 1000, 0),
    "easy": (EASY, 150, 100_000),
    "moved-section": (MOVED_SECTION, 80, 200_000),
    "moved-anywhere": (MOVED_ANYWHERE, 80, 300_000),
}
SLOW_SUITES = {
    "hard": (HARD, 8000, 1_000_000),
    "easy": (EASY, 2000, 2_000_000),
}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The search steps many small batches: intra-op threads only add overhead (several
    times slower with two threads on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def seeds_by_difficulty(config: CoinRunConfig, per_difficulty: int, first_key: int = 0):
    """The first ``per_difficulty`` level seeds of each difficulty that environments with
    keys ``first_key, first_key + 1, ...`` start on (episode 0)."""
    keys = torch.arange(first_key, first_key + 4 * per_difficulty + 100)
    seeds = level_seeds_for(keys, torch.zeros_like(keys), config)
    difficulty = generate_levels(seeds, hard=config.hard).difficulty
    picked = [seeds[difficulty == d][:per_difficulty] for d in (1, 2, 3)]
    assert all(p.numel() == per_difficulty for p in picked)
    return torch.cat(picked)


def prove(suites: dict) -> dict:
    """Search all suites' levels as one batch, then replay every witness from freshly
    generated start states.  Per suite: ``(config, seeds, witnesses, proven)``."""
    seeds = {name: seeds_by_difficulty(c, n, key) for name, (c, n, key) in suites.items()}
    configs = {name: c for name, (c, _, _) in suites.items()}
    # The physics reads only these two settings; levels of any configuration can share it.
    physics = {(c.max_episode_steps, c.end_terminates) for c in configs.values()}
    assert len(physics) == 1
    config = next(iter(configs.values()))

    def starts():
        return concat_states([start_states(seeds[name], configs[name]) for name in suites])

    witnesses = search_states(starts(), config)
    proven = replay_states(starts(), witnesses, config)
    out, lo = {}, 0
    for name in suites:
        hi = lo + len(seeds[name])
        out[name] = (configs[name], seeds[name], witnesses[lo:hi], proven[lo:hi])
        lo = hi
    return out


def assert_all_proven(config, seeds, witnesses, proven) -> None:
    failed = (~proven).nonzero().squeeze(1).tolist()
    if failed:
        s = start_states(seeds[failed[:3]], config)
        difficulty = generate_levels(seeds[failed], hard=config.hard).difficulty.tolist()
        drawings = "\n\n".join(
            f"seed {int(seeds[i])} (difficulty {d}, "
            f"{'no witness found' if witnesses[i] is None else 'witness failed its replay'}):\n"
            + state_to_ascii(s, j)
            for j, (i, d) in enumerate(zip(failed[:3], difficulty))
        )
        pytest.fail(
            f"{len(failed)} of {len(seeds)} levels have no verified witness; seeds "
            f"{[int(seeds[i]) for i in failed[:20]]}\n{drawings}"
        )
    assert max(len(w) for w in witnesses) < config.max_episode_steps


@pytest.fixture(scope="module")
def proofs(one_thread):
    return prove(SUITES)


@pytest.mark.parametrize("difficulty", [1, 2, 3])
def test_every_hard_level_is_solvable(proofs, difficulty):
    config, seeds, witnesses, proven = proofs["hard"]
    mine = (generate_levels(seeds, hard=True).difficulty == difficulty).nonzero().squeeze(1)
    assert mine.numel() >= 1000
    assert_all_proven(config, seeds[mine], [witnesses[i] for i in mine.tolist()], proven[mine])


def test_every_easy_level_is_solvable(proofs):
    assert_all_proven(*proofs["easy"])


@pytest.mark.parametrize("suite", ["moved-section", "moved-anywhere"])
def test_every_moved_coin_is_reachable(proofs, suite):
    config, seeds, witnesses, proven = proofs[suite]
    assert bool(start_states(seeds, config).coin_randomized.all())
    assert_all_proven(config, seeds, witnesses, proven)


def test_replay_accepts_a_witness_and_nothing_less(proofs):
    _, seeds, witnesses, _ = proofs["hard"]
    pick = [0, 1, 1000, 1001, 2000, 2001]  # two levels of each difficulty
    seeds = seeds[pick]
    witnesses = [witnesses[i] for i in pick]
    assert replay(int(seeds[0]), witnesses[0], HARD)
    cut = [w[:-1] for w in witnesses]  # the coin comes with the last action
    stand = [[STAND] * 60 for _ in witnesses]
    proven = replay_witnesses(seeds.repeat(3), witnesses + cut + stand, HARD)
    assert proven.tolist() == [True] * len(pick) + [False] * (2 * len(pick))


def test_replay_rejects_reaching_the_coin_after_dying():
    # Running right with a jump every 20 steps dies on some levels, yet the physics (which
    # never resets by itself) carries the body on to the coin: that is no witness.
    actions = [RIGHT_JUMP if t % 20 < 2 else RIGHT for t in range(80)]
    seeds = torch.arange(64)
    s = start_states(seeds, HARD)
    died = torch.zeros(64, dtype=torch.bool)
    coin_after_death = torch.zeros(64, dtype=torch.bool)
    for a in actions:
        ev = physics_step(s, torch.full((64,), a), HARD)
        coin_after_death |= died & ev.coin_collected
        died |= ev.died
    cases = seeds[coin_after_death]
    assert cases.numel() > 0
    assert not replay_witnesses(cases, [actions] * cases.numel(), HARD).any()


@pytest.mark.slow
def test_every_level_is_solvable_large_sweep(one_thread):
    for result in prove(SLOW_SUITES).values():
        assert_all_proven(*result)
