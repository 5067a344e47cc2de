"""Level generation and coin placement: structure, determinism and statistics."""

from __future__ import annotations

import math

import pytest
import torch

from coinrun_mg.envs.coinrun.levels import generate_levels, place_coins
from coinrun_mg.envs.coinrun.state import (
    BARRIER,
    CRATE,
    EMPTY,
    GRID_H,
    MAX_DX,
    MAX_DY,
    NUM_SOLID,
    SAW,
    START_SECTION_X,
    WALL,
)

N_STATS = 20_000


@pytest.fixture(scope="module")
def hard_levels():
    seeds = torch.arange(N_STATS, dtype=torch.int64) * 7919 + 13
    return seeds, generate_levels(seeds, hard=True)


def test_generation_is_a_pure_function_of_the_seed():
    seeds = torch.tensor([5, 17, 123456, 2**31 - 1])
    alone = [generate_levels(seeds[i : i + 1], hard=True) for i in range(4)]
    batch = generate_levels(seeds.flip(0), hard=True)
    for i in range(4):
        j = 3 - i
        assert torch.equal(alone[i].grid[0], batch.grid[j])
        assert torch.equal(alone[i].enemy_x[0], batch.enemy_x[j])
        assert torch.equal(alone[i].enemy_vx[0], batch.enemy_vx[j])
        assert int(alone[i].end_x[0]) == int(batch.end_x[j])


def test_level_structure(hard_levels):
    seeds, lv = hard_levels
    b = torch.arange(len(seeds))
    assert lv.difficulty.min() == 1 and lv.difficulty.max() == 3
    # Outer walls, floor and the wall beyond the end.
    assert bool((lv.grid[:, 0, :] < NUM_SOLID).all()) and bool(
        (lv.grid[:, -1, :] < NUM_SOLID).all()
    )
    assert bool((lv.grid[:, :, 0] < NUM_SOLID).all()) and bool(
        (lv.grid[:, :, GRID_H - 1] < NUM_SOLID).all()
    )
    right_of_end = lv.grid[b, lv.end_x + 1]  # [B, H]
    assert bool((right_of_end < NUM_SOLID).all())
    # The end tile is open and stands on ground.
    assert bool((lv.grid[b, lv.end_x, lv.end_y] == EMPTY).all())
    assert bool((lv.grid[b, lv.end_x, lv.end_y - 1] < NUM_SOLID).all())
    assert int(lv.end_x.min()) >= 8 and int(lv.end_x.max()) <= 50
    # Section edges respect the jump physics: height changes of at most MAX_DY.
    valid = lv.section_valid
    ys = torch.where(valid, lv.section_y, 0)
    steps = (ys[:, 1:] - ys[:, :-1]).abs()[valid[:, 1:]]
    assert int(steps.max()) <= MAX_DY
    assert int((ys[:, 0] - 1)[valid[:, 0]].max()) <= MAX_DY


def test_pits_are_jumpable_and_hold_one_danger_type(hard_levels):
    _, lv = hard_levels
    kinds_seen = set()
    for i in range(2000):
        g = lv.grid[i]
        starts = [int(x) for x, ok in zip(lv.section_x[i], lv.section_valid[i]) if ok]
        bounds = list(zip(starts, starts[1:] + [int(lv.end_x[i])]))
        dangers = set()
        for (x0, x1), y in zip(bounds, lv.section_y[i].tolist()):
            if y <= 3:
                continue  # too low for a pit (procgen's rule)
            pit = [x for x in range(x0, x1) if int(g[x, 1]) >= NUM_SOLID]
            if not pit:
                continue
            assert len(pit) <= MAX_DX and pit == list(range(pit[0], pit[-1] + 1))
            floor = {int(g[x, 1]) for x in pit}
            walkers = lv.enemy_alive[i] & (lv.enemy_y[i] == 1.5)
            walkers &= (lv.enemy_x[i] > pit[0]) & (lv.enemy_x[i] < pit[-1] + 1)
            if floor & {4, 5}:
                dangers.add("lava")
            if SAW in floor:
                dangers.add("saw")
            if bool(walkers.any()):
                dangers.add("enemy")
        assert len(dangers) <= 1, f"level {i} mixes pit dangers {dangers}"
        kinds_seen |= dangers
    assert kinds_seen == {"lava", "saw", "enemy"}


def test_easy_mode_has_no_walkers_on_flat_ground():
    seeds = torch.arange(3000)
    easy = generate_levels(seeds, hard=False)
    hard = generate_levels(seeds, hard=True)
    assert bool((easy.enemy_alive & (easy.enemy_y > 1.5)).sum() == 0)
    assert int((hard.enemy_alive & (hard.enemy_y > 1.5)).sum()) > 100
    assert int(easy.theme.max()) == 0 and int(hard.theme.unique().numel()) > 1


def test_barriers_are_at_section_edges(hard_levels):
    _, lv = hard_levels
    g = lv.grid[:500]
    xs, ys = torch.nonzero(g == BARRIER)[:, 1], torch.nonzero(g == BARRIER)[:, 2]
    assert len(xs) > 0
    rows = torch.nonzero(g == BARRIER)[:, 0]
    edges = lv.section_x[rows]
    at_edge = ((xs[:, None] == edges) | (xs[:, None] == edges - 1)).any(dim=1)
    assert bool(at_edge.all())
    del ys


@pytest.mark.parametrize("fraction", [0.0, 1.0])
def test_fraction_extremes(hard_levels, fraction):
    seeds, lv = hard_levels
    cx, cy, moved = place_coins(lv, seeds, fraction)
    if fraction == 0.0:
        assert not bool(moved.any())
        assert torch.equal(cx, lv.end_x) and torch.equal(cy, lv.end_y)
    else:
        assert bool(moved.all())
        assert bool((cx < lv.end_x).all())  # no coin stays at the end


@pytest.mark.parametrize("fraction", [0.001, 0.02, 0.3])
def test_fraction_statistics(hard_levels, fraction):
    seeds, lv = hard_levels
    _, _, moved = place_coins(lv, seeds, fraction)
    n = len(seeds)
    sigma = math.sqrt(fraction * (1 - fraction) / n)
    assert abs(moved.float().mean().item() - fraction) < 4.5 * sigma + 1e-9
    # Decided per level seed: the same seeds give the same choice.
    _, _, again = place_coins(lv, seeds, fraction)
    assert torch.equal(moved, again)


def test_moving_the_coin_never_changes_the_terrain():
    seeds = torch.arange(200)
    a = generate_levels(seeds, hard=True)
    b = generate_levels(seeds, hard=True)
    place_coins(a, seeds, 1.0)
    assert torch.equal(a.grid, b.grid)


def test_section_placement_is_on_ground_at_a_section_left_edge(hard_levels):
    seeds, lv = hard_levels
    cx, cy, moved = place_coins(lv, seeds, 1.0, "section")
    b = torch.arange(len(seeds))
    assert bool(
        ((lv.section_x == cx[:, None]) & (lv.section_y == cy[:, None]) & lv.section_valid)
        .any(dim=1)
        .all()
    )
    below = lv.grid[b, cx, cy - 1]
    here = lv.grid[b, cx, cy]
    assert bool((below < NUM_SOLID).all()), "coin not on top of the ground"
    assert bool(((here != CRATE) & (here != SAW) & (here >= NUM_SOLID)).all())
    assert int(cx.min()) == START_SECTION_X
    # Uniform over sections: the first section is picked 1/num_sections of the time.
    num_sections = lv.section_valid.sum(dim=1)
    first = (cx == lv.section_x[:, 0]).float()
    expected = (1.0 / num_sections.float()).mean().item()
    assert abs(first.mean().item() - expected) < 0.02


def test_anywhere_placement_is_a_safe_standing_tile(hard_levels):
    seeds, lv = hard_levels
    cx, cy, moved = place_coins(lv, seeds, 1.0, "anywhere")
    b = torch.arange(len(seeds))
    assert bool(moved.all())
    assert bool((lv.grid[b, cx, cy - 1] < NUM_SOLID).all())
    here = lv.grid[b, cx, cy]
    assert bool(((here == EMPTY) | (here == BARRIER)).all())
    assert bool(((cx >= START_SECTION_X) & (cx < lv.end_x)).all())
    # It reaches tiles that section placement never uses.
    sx, _, _ = place_coins(lv, seeds, 1.0, "section")
    assert bool((cx != sx).float().mean() > 0.5)


@pytest.mark.parametrize("placement", ["section", "anywhere"])
def test_coin_region_is_respected(hard_levels, placement):
    seeds, lv = hard_levels
    lo, hi = 0.8, 1.0
    cx, _, moved = place_coins(lv, seeds, 1.0, placement, (lo, hi))
    length = lv.end_x.float()[:, None]
    if placement == "section":
        cand_x, cand_ok = lv.section_x, lv.section_valid
    else:
        cand_x = torch.arange(lv.stand_y.shape[1]).expand_as(lv.stand_y)
        cand_ok = lv.stand_y >= 0
    cand_in = cand_ok & (cand_x >= lo * length) & (cand_x <= hi * length)
    has_inside = cand_in.any(dim=1)
    inside = (cx >= lo * length[:, 0]) & (cx <= hi * length[:, 0])
    assert bool(inside[has_inside & moved].all())
    # Levels with no candidate in the region get the candidate nearest to it.
    gap = torch.where(cand_ok, lo * length - cand_x, torch.inf).amin(dim=1)
    fallback = ~has_inside & moved
    assert torch.allclose((lo * length[:, 0] - cx)[fallback], gap[fallback])
    # Section edges are coarse: only about a fifth of levels have one in the right 20%.
    assert has_inside.float().mean().item() > (0.15 if placement == "section" else 0.9)


def test_unknown_placement_is_rejected():
    seeds = torch.arange(3)
    lv = generate_levels(seeds, hard=True)
    with pytest.raises(ValueError, match="coin_placement='middle'"):
        place_coins(lv, seeds, 1.0, "middle")


def test_walls_and_stepping_blocks_are_solid_tiles(hard_levels):
    _, lv = hard_levels
    assert int(((lv.grid == WALL) | (lv.grid == 1)).sum()) > 0


def test_column_bit_masks_match_the_grid():
    from coinrun_mg.envs.coinrun.state import EnvState

    seeds = torch.arange(3000)
    lv = generate_levels(seeds, hard=True)
    s = EnvState.zeros(len(seeds), "cpu")
    s.grid = lv.grid
    s.update_bits()  # packs the rasterized grid: the slow, obviously-right way
    assert torch.equal(s.solid_bits, lv.solid_bits)
    assert torch.equal(s.crate_bits, lv.crate_bits)
    assert torch.equal(s.danger_bits, lv.danger_bits)
