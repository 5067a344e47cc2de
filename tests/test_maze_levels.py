"""Maze levels: perfect mazes, sizes, determinism, cheese placement statistics and
decision levels."""

from __future__ import annotations

import math

import pytest
import torch

from coinrun_mg.envs.maze.ascii import level_to_ascii, state_from_ascii
from coinrun_mg.envs.maze.config import WORLD_DIM
from coinrun_mg.envs.maze.levels import (
    MazeLevels,
    cheese_moved,
    corner_lo,
    draw_maze_dims,
    generate_mazes,
    place_cheese,
)
from coinrun_mg.envs.maze.paths import decision_levels, path_lengths
from coinrun_mg.envs.maze.solver import distance_field

N_LEVELS = 3000  # per mode for the structural checks


def _seeds(n: int, salt: int = 0) -> torch.Tensor:
    return torch.arange(n, dtype=torch.int64) * 7919 + 13 + salt


@pytest.fixture(scope="module", params=["easy", "hard"])
def mazes(request):
    seeds = _seeds(N_LEVELS)
    return seeds, generate_mazes(seeds, WORLD_DIM[request.param])


def _chi_square(counts: torch.Tensor) -> float:
    expected = counts.sum() / counts.numel()
    return float(((counts - expected) ** 2 / expected).sum())


def _chi_square_bound(df: int) -> float:
    """A chi-square statistic with ``df`` degrees of freedom exceeds this with
    probability below about 1e-4 (Wilson-Hilferty)."""
    z = 3.72
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


def test_mazes_are_perfect_and_centred(mazes):
    seeds, lv = mazes
    b, d = lv.wall.shape[0], lv.world_dim
    k = (lv.maze_dim - 1) // 2
    free = ~lv.wall
    opened = free.sum(dim=(1, 2))
    assert torch.equal(opened, 2 * (k + 1) ** 2 - 1)
    # A tree: connected, and one fewer adjacent open pair than open cells.
    pairs = (free[:, 1:] & free[:, :-1]).sum(dim=(1, 2)) + (free[:, :, 1:] & free[:, :, :-1]).sum(
        dim=(1, 2)
    )
    assert torch.equal(pairs, opened - 1)
    dist = distance_field(lv.wall, lv.margin, lv.margin)  # from the start
    assert bool(((dist >= 0) == free).all())
    # Open cells only inside the centred maze; junctions open, odd-odd cells wall.
    cells = torch.arange(d)
    local = cells[None, :] - lv.margin[:, None]
    inside = (local >= 0) & (local < lv.maze_dim[:, None])
    assert torch.equal(lv.margin, (d - lv.maze_dim) // 2)
    assert not bool((free & ~(inside[:, :, None] & inside[:, None, :])).any())
    even = inside & (local % 2 == 0)
    odd = inside & (local % 2 == 1)
    assert bool(free[even[:, :, None] & even[:, None, :]].all())
    assert not bool(free[odd[:, :, None] & odd[:, None, :]].any())
    assert bool((~lv.wall[torch.arange(b), lv.margin, lv.margin]).all())  # the start
    # So every cheese, wherever placed, is reachable from the start and from the corner.
    x, y, moved = place_cheese(lv, seeds, 0.5, 3)
    assert bool(moved.any()) and not bool(moved.all())
    assert bool((torch.stack(path_lengths(lv, x, y)) >= 0).all())


@pytest.mark.parametrize("mode", ["easy", "hard"])
def test_maze_dims_are_uniform_over_odd_sides(mode):
    d = WORLD_DIM[mode]
    dims = draw_maze_dims(_seeds(20_000, salt=1), d)
    sides = torch.arange(3, d + 1, 2)
    counts = (dims[:, None] == sides[None, :]).sum(dim=0).double()
    assert int(counts.sum()) == 20_000  # odd sides 3 .. world_dim only
    assert _chi_square(counts) < _chi_square_bound(len(sides) - 1)


def test_generation_is_a_pure_function_of_the_seed():
    seeds = torch.tensor([5, 17, 123456, 2**31 - 1])
    for d in WORLD_DIM.values():
        alone = [generate_mazes(seeds[i : i + 1], d) for i in range(4)]
        batch = generate_mazes(seeds.flip(0), d)
        placed = place_cheese(batch, seeds.flip(0), 0.5, 3)
        for i in range(4):
            j = 3 - i
            assert torch.equal(alone[i].wall[0], batch.wall[j])
            one = place_cheese(alone[i], seeds[i : i + 1], 0.5, 3)
            assert [int(t[0]) for t in one] == [int(t[j]) for t in placed]
    assert not torch.equal(batch.wall[0], batch.wall[1])


def _one_maze_many_draws(seed: int, n: int) -> tuple[MazeLevels, torch.Tensor]:
    """The maze of ``seed`` repeated ``n`` times, with ``n`` different placement seeds
    (placement reads only the levels and the seeds, so this isolates its randomness)."""
    lv = generate_mazes(torch.tensor([seed]), 25)
    assert int(lv.maze_dim[0]) >= 11
    rep = MazeLevels(lv.wall.expand(n, -1, -1), lv.maze_dim.expand(n), lv.margin.expand(n))
    return rep, _seeds(n, salt=seed)


def _seed_with_dim_at_least(low: int) -> int:
    seeds = _seeds(200, salt=5)
    return int(seeds[draw_maze_dims(seeds, 25) >= low][0])


@pytest.mark.parametrize("corner_size", [1, 3, 5, 40])
def test_corner_placement_stays_in_the_region(mazes, corner_size):
    seeds, lv = mazes
    x, y, moved = place_cheese(lv, seeds, 0.0, corner_size)
    b = torch.arange(len(seeds))
    top = lv.margin + lv.maze_dim - 1
    lo = corner_lo(lv, corner_size)
    assert not bool(moved.any())
    assert torch.equal(lo, top + 1 - lv.maze_dim.clamp(max=corner_size))
    assert bool(((x >= lo) & (x <= top) & (y >= lo) & (y <= top)).all())
    assert not bool(lv.wall[b, x, y].any())
    assert not bool(((x == lv.margin) & (y == lv.margin)).any())  # never the start
    if corner_size == 1:
        assert torch.equal(x, top) and torch.equal(y, top)


def test_corner_placement_is_uniform_within_the_region():
    n, k = 12_000, 5
    lv, seeds = _one_maze_many_draws(_seed_with_dim_at_least(11), n)
    x, y, _ = place_cheese(lv, seeds, 0.0, k)
    lo, top = int(corner_lo(lv, k)[0]), int(lv.margin[0] + lv.maze_dim[0] - 1)
    region = ~lv.wall[0, lo : top + 1, lo : top + 1]
    counts = torch.zeros(k, k, dtype=torch.float64)
    counts.index_put_((x - lo, y - lo), torch.ones(n, dtype=torch.float64), accumulate=True)
    assert torch.equal(counts > 0, region)  # every open cell of the region, nothing else
    assert _chi_square(counts[region]) < _chi_square_bound(int(region.sum()) - 1)


def test_moved_placement_is_uniform_over_open_cells_but_the_start():
    n = 20_000
    lv, seeds = _one_maze_many_draws(_seed_with_dim_at_least(11), n)
    x, y, moved = place_cheese(lv, seeds, 1.0, 1)
    assert bool(moved.all())
    d = lv.world_dim
    counts = torch.zeros(d, d, dtype=torch.float64)
    counts.index_put_((x, y), torch.ones(n, dtype=torch.float64), accumulate=True)
    candidates = ~lv.wall[0].clone()
    m = int(lv.margin[0])
    candidates[m, m] = False
    assert torch.equal(counts > 0, candidates)
    assert _chi_square(counts[candidates]) < _chi_square_bound(int(candidates.sum()) - 1)


@pytest.mark.parametrize("fraction", [0.0, 0.02, 0.3, 1.0])
def test_moved_share_follows_rand_fraction(fraction):
    n = 50_000
    moved = cheese_moved(_seeds(n, salt=2), fraction)
    sigma = math.sqrt(n * fraction * (1 - fraction))
    assert abs(int(moved.sum()) - n * fraction) <= 5 * sigma + 1e-9
    # Nested shares: a level moved at a fraction stays moved at any larger one.
    if 0 < fraction < 1:
        assert bool(cheese_moved(_seeds(n, salt=2), min(1.0, 2 * fraction))[moved].all())


# --- decision levels on hand-built mazes -------------------------------------------------

# Each: drawing, (start -> cheese, start -> corner, cheese -> corner), decision level.
HAND_BUILT = {
    "fork": (
        [
            "c#...",
            ".#.##",
            ".....",
            "####.",
            ".....",
        ],
        (12, 12, 8),
        True,
    ),
    "fork at the start": (
        [
            "c#...",
            ".#.##",
            ".#...",
            ".###.",
            ".....",
        ],
        (4, 12, 16),
        True,
    ),
    "cheese on the way to the corner": (
        [
            "..c..",
            ".###.",
            "...#.",
            "##.##",
            "A....",
        ],
        (10, 12, 2),
        False,
    ),
    "corner on the way to the cheese": (
        [
            ".....",
            ".###.",
            "c#...",
            "##.##",
            ".....",
        ],
        (14, 8, 6),
        False,
    ),
    "cheese in the corner": (
        [
            "....c",
            ".###.",
            ".#...",
            ".####",
            ".....",
        ],
        (8, 8, 0),
        False,
    ),
}


def _is_tree(wall: torch.Tensor) -> bool:
    free = ~wall
    pairs = int((free[:, 1:] & free[:, :-1]).sum() + (free[:, :, 1:] & free[:, :, :-1]).sum())
    dist = distance_field(wall, torch.tensor([0]), torch.tensor([0]))
    return pairs == int(free.sum()) - 1 and bool(((dist >= 0) == free).all())


@pytest.mark.parametrize("name", list(HAND_BUILT))
def test_decision_levels_on_hand_built_mazes(name):
    drawing, lengths, decision = HAND_BUILT[name]
    s = state_from_ascii(drawing)
    assert _is_tree(s.wall)
    with_agent = list(drawing)
    if not any("A" in line for line in drawing):
        with_agent[-1] = "A" + with_agent[-1][1:]
    assert level_to_ascii(s) == with_agent
    lv = MazeLevels(s.wall, s.maze_dim, s.margin)
    assert tuple(int(v[0]) for v in path_lengths(lv, s.cheese_x, s.cheese_y)) == lengths
    assert bool(decision_levels(lv, s.cheese_x, s.cheese_y)[0]) == decision
    assert bool(s.decision_level[0]) == decision


def test_decision_square_agrees_with_walking_the_paths():
    # Independent of the distance formula: walk the start -> corner and start -> cheese
    # paths cell by cell and look for the other end on each.
    seeds = _seeds(300, salt=3)
    lv = generate_mazes(seeds, 25)
    x, y, _ = place_cheese(lv, seeds, 1.0, 1)
    top = lv.margin + lv.maze_dim - 1

    def path_cells(tx, ty):
        dist = distance_field(lv.wall, tx, ty)
        b = torch.arange(len(seeds))
        ax, ay = lv.margin.clone(), lv.margin.clone()
        visited = [set() for _ in seeds]
        for _ in range(400):
            for i in range(len(seeds)):
                visited[i].add((int(ax[i]), int(ay[i])))
            d = dist[b, ax, ay]
            step = torch.zeros_like(d)
            for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                nx, ny = (ax + dx).clamp(0, 24), (ay + dy).clamp(0, 24)
                go = (step == 0) & (d > 0) & (dist[b, nx, ny] == d - 1)
                ax, ay = torch.where(go, nx, ax), torch.where(go, ny, ay)
                step = step | go.long()
        return visited

    to_corner, to_cheese = path_cells(top, top), path_cells(x, y)
    expected = [
        (int(x[i]), int(y[i])) not in to_corner[i] and (int(top[i]),) * 2 not in to_cheese[i]
        for i in range(len(seeds))
    ]
    got = decision_levels(lv, x, y).tolist()
    assert got == expected
    assert 0.2 < sum(got) / len(got) < 0.9  # both kinds occur
