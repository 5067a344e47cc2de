"""Observations (envs/coinrun/observation.py) on hand-made states: layout, colours, edges."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from coinrun_mg.envs.coinrun import observation as render
from coinrun_mg.envs.coinrun import state as state_module
from coinrun_mg.envs.coinrun.observation import (
    AGENT_COLOURS,
    COIN_COLOUR,
    END_MARKER_COLOURS,
    ENEMY_COLOUR,
    PALETTE,
    SYMBOLIC_CHANNEL_NAMES,
    SYMBOLIC_CHANNELS,
    TILE_COLOUR_NAMES,
    human_frame,
    padded_classes,
    padded_shape,
    pixel_obs,
    symbolic_classes,
    symbolic_obs,
)
from coinrun_mg.envs.coinrun.state import (
    AGENT_RX,
    AGENT_RY,
    BARRIER,
    CRATE,
    EMPTY,
    GRID_H,
    GRID_W,
    LAVA,
    LAVA_TOP,
    MAX_ENEMIES,
    NUM_THEMES,
    SAW,
    WALL,
    WALL_TOP,
    EnvState,
)

CH = {name: i for i, name in enumerate(SYMBOLIC_CHANNEL_NAMES)}
COL = {name: i for i, name in enumerate(TILE_COLOUR_NAMES)}


def level(n: int = 1, x: float = 10.5, y: float = 5.5) -> EnvState:
    """``n`` empty levels walled like real ones (column 0, rows 0 and 63), agent at (x, y),
    the coin parked far away in the top-right corner."""
    s = EnvState.zeros(n, "cpu")
    s.grid[:, 0, :] = WALL
    s.grid[:, :, 0] = WALL
    s.grid[:, :, GRID_H - 1] = WALL
    s.agent_x.fill_(x)
    s.agent_y.fill_(y)
    s.coin_x.fill_(GRID_W - 2)
    s.coin_y.fill_(GRID_H - 2)
    s.end_x.fill_(GRID_W - 2)
    s.end_y.fill_(GRID_H - 2)
    return s


def random_state(n: int, seed: int = 0) -> EnvState:
    """Random tiles and entities, agents anywhere including slightly outside the grid."""
    g = torch.Generator().manual_seed(seed)
    s = EnvState.zeros(n, "cpu")
    s.grid = torch.randint(0, 8, (n, GRID_W, GRID_H), generator=g, dtype=torch.uint8)
    s.agent_x = torch.rand(n, generator=g) * (GRID_W + 2) - 1
    s.agent_y = torch.rand(n, generator=g) * (GRID_H + 2) - 1
    s.agent_vx = torch.rand(n, generator=g) - 0.5
    s.agent_vy = torch.rand(n, generator=g) * 3 - 1.5
    s.facing_right = torch.rand(n, generator=g) < 0.5
    s.theme = torch.randint(0, NUM_THEMES, (n,), generator=g)
    near = torch.randint(-4, 5, (n, 2), generator=g)
    s.coin_x = (s.agent_x.floor().long() + near[:, 0]).clamp(0, GRID_W - 1)
    s.coin_y = (s.agent_y.floor().long() + near[:, 1]).clamp(0, GRID_H - 1)
    s.end_x, s.end_y = s.coin_x + 1, s.coin_y.clone()
    s.enemy_x = s.agent_x[:, None] + torch.rand(n, MAX_ENEMIES, generator=g) * 16 - 8
    s.enemy_y = s.agent_y[:, None] + torch.rand(n, MAX_ENEMIES, generator=g) * 16 - 8
    s.enemy_alive = torch.rand(n, MAX_ENEMIES, generator=g) < 0.2
    return s


def rgb(colour) -> torch.Tensor:
    return torch.as_tensor(colour, dtype=torch.uint8)


# --- Symbolic -------------------------------------------------------------------------------


def test_symbolic_constants():
    assert SYMBOLIC_CHANNELS == len(SYMBOLIC_CHANNEL_NAMES) == 10
    assert SYMBOLIC_CHANNEL_NAMES[:6] == ("solid", "lava", "saw", "crate", "coin", "enemy")


@pytest.mark.parametrize("n, view", [(1, 3), (3, 13), (2, 7), (4, 21)])
def test_symbolic_shape_and_dtype(n, view):
    obs = symbolic_obs(random_state(n), view)
    assert obs.shape == (n, view, view, SYMBOLIC_CHANNELS)
    assert obs.dtype == torch.uint8
    assert obs.is_contiguous()
    assert set(obs[..., :6].unique().tolist()) <= {0, 255}


@pytest.mark.parametrize("view", [0, 1, 2, 4, 12])
def test_symbolic_rejects_bad_view(view):
    with pytest.raises(ValueError):
        symbolic_obs(level(), view)


def test_symbolic_default_view_is_13():
    assert symbolic_obs(level()).shape == (1, 13, 13, SYMBOLIC_CHANNELS)


def test_symbolic_tiles_land_in_their_cells():
    s = level(x=10.5, y=5.5)  # agent tile (10, 5) is the centre cell (6, 6)
    s.grid[0, 9, 5] = WALL  # left of the agent
    s.grid[0, 11, 6] = WALL_TOP  # up-right
    s.grid[0, 12, 4] = LAVA  # two right, one down
    s.grid[0, 13, 4] = LAVA_TOP
    s.grid[0, 8, 8] = SAW
    s.grid[0, 10, 3] = CRATE
    s.grid[0, 11, 5] = BARRIER  # invisible: no channel
    obs = symbolic_obs(s, 13)[0]
    h = 6

    def cell(x, y):  # channels of the cell showing tile (x, y)
        return obs[h - (y - 5), h + (x - 10)]

    assert cell(9, 5)[CH["solid"]] == 255
    assert cell(11, 6)[CH["solid"]] == 255
    assert cell(12, 4)[CH["lava"]] == 255 and cell(13, 4)[CH["lava"]] == 255
    assert cell(8, 8)[CH["saw"]] == 255
    assert cell(10, 3)[CH["crate"]] == 255
    assert (cell(11, 5)[:6] == 0).all()
    assert (cell(10, 5)[:6] == 0).all()
    # Row 0 is the top: the floor (y = 0) is image row h + 5, the empty row above it h + 4.
    assert (obs[h + 5, :, CH["solid"]] == 255).all()
    assert (obs[h + 4, :, CH["solid"]] == 0).all()
    # Nothing else is marked: solid = the floor row, the row below the grid (y = -1) and
    # the two walls placed.
    assert (obs[h + 6, :, CH["solid"]] == 255).all()
    assert int((obs[..., CH["solid"]] == 255).sum()) == 13 + 13 + 2
    assert int((obs[..., CH["lava"]] == 255).sum()) == 2
    assert int((obs[..., CH["saw"]] == 255).sum()) == 1
    assert int((obs[..., CH["crate"]] == 255).sum()) == 1


def test_symbolic_coin_channel_lights_exactly_the_coin_cell():
    s = level(2, x=20.2, y=9.9)
    s.coin_x[0], s.coin_y[0] = 22, 10  # dx = +2, dy = +1
    s.coin_x[1], s.coin_y[1] = 20 - 6, 9 - 6  # bottom-left corner of the view
    obs = symbolic_obs(s, 13)
    coin = obs[..., CH["coin"]]
    assert coin[0].nonzero().tolist() == [[6 - 1, 6 + 2]]
    assert coin[1].nonzero().tolist() == [[12, 0]]
    assert set(coin.unique().tolist()) == {0, 255}


def test_symbolic_coin_outside_view_is_absent():
    s = level(x=20.5, y=9.5)
    s.coin_x[0], s.coin_y[0] = 27, 9  # 7 tiles right: just outside a 13-wide view
    assert (symbolic_obs(s, 13)[..., CH["coin"]] == 0).all()
    assert symbolic_obs(s, 15)[0, 7, 14, CH["coin"]] == 255


def test_symbolic_enemies():
    s = level(x=20.5, y=9.5)
    s.enemy_alive[0, :4] = True
    s.enemy_x[0, :4] = torch.tensor([18.9, 22.5, 22.1, 40.0])  # tiles 18, 22, 22, far
    s.enemy_y[0, :4] = torch.tensor([9.5, 11.2, 11.7, 9.5])  # rows 9, 11, 11
    s.enemy_x[0, 4], s.enemy_y[0, 4] = 21.5, 9.5  # dead: not shown
    enemy = symbolic_obs(s, 13)[0, ..., CH["enemy"]]
    assert sorted(enemy.nonzero().tolist()) == [[6 - 2, 6 + 2], [6, 6 - 2]]


def test_symbolic_out_of_grid_is_solid():
    # First, middle and last environments near different edges of an all-empty grid (the
    # first and the last take a different path in the crop).
    s = EnvState.zeros(4, "cpu")
    s.agent_x = torch.tensor([1.5, 62.5, 0.2, 63.7])
    s.agent_y = torch.tensor([2.5, 61.3, 62.9, 3.1])
    s.coin_x.fill_(30)
    s.coin_y.fill_(30)
    solid = symbolic_obs(s, 13)[..., CH["solid"]] == 255
    for i, (tx, ty) in enumerate([(1, 2), (62, 61), (0, 62), (63, 3)]):
        for r in range(13):
            for c in range(13):
                x, y = tx - 6 + c, ty + 6 - r
                outside = not (0 <= x < GRID_W and 0 <= y < GRID_H)
                assert bool(solid[i, r, c]) == outside, (i, r, c)


def test_symbolic_agent_outside_the_grid_sees_walls():
    s = level(2, x=-20.0, y=5.0)
    s.agent_x[1] = 100.0
    obs = symbolic_obs(s, 5)
    assert (obs[..., CH["solid"]] == 255).all()


def test_symbolic_constant_planes():
    s = level(4, x=10.5, y=5.0)
    s.agent_vx = torch.tensor([0.5, -0.5, 0.0, 0.25])
    s.agent_vy = torch.tensor([1.5, -1.5, 0.0, -0.75])
    s.agent_x = torch.tensor([10.0, 10.5, 10.25, 10.999])
    s.agent_y = torch.tensor([5.0, 5.5, 5.75, 5.001])
    obs = symbolic_obs(s, 5)
    expect = {
        "vx": [255, 0, 128, 191],
        "vy": [255, 0, 128, 64],
        "x_frac": [0, 128, 64, 255],
        "y_frac": [0, 128, 191, 0],
    }
    for name, values in expect.items():
        plane = obs[..., CH[name]]
        assert plane.flatten(1).min(1).values.tolist() == values, name
        assert plane.flatten(1).max(1).values.tolist() == values, name


def test_symbolic_velocity_saturates():
    s = level(2)
    s.agent_vx = torch.tensor([3.0, -3.0])
    s.agent_vy = torch.tensor([-9.0, 9.0])
    obs = symbolic_obs(s, 3)
    assert obs[:, 0, 0, CH["vx"]].tolist() == [255, 0]
    assert obs[:, 0, 0, CH["vy"]].tolist() == [0, 255]


def reference_symbolic(s: EnvState, view: int) -> torch.Tensor:
    """Cell-by-cell restatement of the symbolic observation."""
    h = view // 2
    out = torch.zeros(s.num_envs, view, view, SYMBOLIC_CHANNELS, dtype=torch.uint8)

    def byte(v, lo, hi):
        return max(0, min(255, round((v - lo) * 255 / (hi - lo))))

    for i in range(s.num_envs):
        ax, ay = math.floor(float(s.agent_x[i])), math.floor(float(s.agent_y[i]))
        enemies = {
            (math.floor(float(s.enemy_x[i, e])), math.floor(float(s.enemy_y[i, e])))
            for e in range(MAX_ENEMIES)
            if s.enemy_alive[i, e]
        }
        for r in range(view):
            for c in range(view):
                x, y = ax - h + c, ay + h - r
                inside = 0 <= x < GRID_W and 0 <= y < GRID_H
                t = int(s.grid[i, x, y]) if inside else WALL
                flags = (
                    t in (WALL, WALL_TOP),
                    t in (LAVA, LAVA_TOP),
                    t == SAW,
                    t == CRATE,
                    (x, y) == (int(s.coin_x[i]), int(s.coin_y[i])),
                    (x, y) in enemies,
                )
                out[i, r, c, :6] = torch.tensor(flags, dtype=torch.uint8) * 255
        out[i, :, :, 6] = byte(float(s.agent_vx[i]), -0.5, 0.5)
        out[i, :, :, 7] = byte(float(s.agent_vy[i]), -1.5, 1.5)
        out[i, :, :, 8] = byte(float(s.agent_x[i]) - ax, 0, 1)
        out[i, :, :, 9] = byte(float(s.agent_y[i]) - ay, 0, 1)
    return out


@pytest.mark.parametrize("seed, view", [(0, 13), (1, 5), (2, 9)])
def test_symbolic_matches_reference(seed, view):
    s = random_state(6, seed)
    assert torch.equal(symbolic_obs(s, view), reference_symbolic(s, view))


def test_symbolic_batch_equals_single_envs():
    s = random_state(9, seed=3)
    batch = symbolic_obs(s, 13)
    for i in range(s.num_envs):
        assert torch.equal(batch[i : i + 1], symbolic_obs(s.index(slice(i, i + 1)), 13))


def test_symbolic_classes():
    # Tiles that look alike in the symbolic view share a class; the class decides the
    # tile channels.
    codes = torch.tensor([WALL, WALL_TOP, EMPTY, BARRIER, LAVA, LAVA_TOP, SAW, CRATE])
    classes = symbolic_classes(codes.to(torch.uint8)).tolist()
    assert classes[0] == classes[1] == render.SOLID_CLASS
    assert classes[2] == classes[3] == render.EMPTY_CLASS
    assert classes[4] == classes[5] == render.LAVA_CLASS
    assert classes[6:] == [render.SAW_CLASS, render.CRATE_CLASS]
    assert len(set(classes)) == render.NUM_SYMBOLIC_CLASSES
    # The same on a whole grid batch, as the core pads it.
    s = random_state(2, seed=4)
    lookup = torch.tensor(classes, dtype=torch.uint8)
    assert torch.equal(symbolic_classes(s.grid), lookup[s.grid.long()])


def test_padded_classes_layout():
    s = random_state(3, seed=5)
    view, h = 9, 4
    padded = padded_classes(s.grid, view)
    assert padded.shape == (3, *padded_shape(view)) == (3, h + GRID_H + view, GRID_W + 2 * h)
    classes = symbolic_classes(s.grid)
    for n, x, y in [(0, 0, 0), (1, 63, 63), (2, 10, 40), (0, 5, 62)]:
        assert padded[n, h + GRID_H - 1 - y, h + x] == classes[n, x, y]
    margin = padded.clone()
    margin[:, h : h + GRID_H, h : h + GRID_W] = 9
    assert (margin != 9).sum() == (margin == render.SOLID_CLASS).sum() > 0  # all wall


def test_symbolic_with_kept_padded_grids():
    # The core's crop (from padded grids) and the direct one (a gather from the grid)
    # agree, also for agents off the grid: their view is all wall.
    s = random_state(5, seed=8)
    s.agent_x[1], s.agent_y[3] = -2.5, 64.2
    for view in (3, 13):
        kept = symbolic_obs(s, view, padded=padded_classes(s.grid, view))
        assert torch.equal(kept, symbolic_obs(s, view))
        assert (kept[[1, 3], ..., CH["solid"]] == 255).all()
    with pytest.raises(ValueError, match=r"padded has shape .* view=13"):
        symbolic_obs(s, 13, padded=padded_classes(s.grid, 11))


def test_symbolic_with_a_separate_plan():
    # The core computes the plan on its own (compiled on the CPU) and passes it in.
    s = random_state(5, seed=9)
    plan = render.symbolic_plan(s, 7)
    assert torch.equal(symbolic_obs(s, 7, plan=plan), symbolic_obs(s, 7))
    with pytest.raises(ValueError, match=r"plan is for \(5, 7\).*symbolic_plan\(state, 13\)"):
        symbolic_obs(s, 13, plan=plan)


# --- Pixels --------------------------------------------------------------------------------
# Defaults: 64 px, 12.8 tiles -> 5 px per tile; pixel centres lie 0.2 (p - 31.5) tiles
# from the agent's centre.  With the agent at (10.4, 5.6) they fall on tile centres and
# tile (x, y) is the 5x5 block around row 32 - 5 (y - 5), column 32 + 5 (x - 10).  With
# the agent at a tile centre, e.g. (10.5, 5.5), they fall exactly on tile edges.
AX, AY = 10.4, 5.6


def tile_px(x: int, y: int) -> tuple[int, int]:
    """(row, column) of the centre pixel of tile (x, y), agent at (AX, AY)."""
    return 32 - 5 * (y - 5), 32 + 5 * (x - 10)


@pytest.mark.parametrize("n, size, tiles", [(1, 64, 12.8), (3, 32, 7.0), (2, 48, 20.0)])
def test_pixel_shape_and_dtype(n, size, tiles):
    img = pixel_obs(random_state(n), size, tiles)
    assert img.shape == (n, size, size, 3)
    assert img.dtype == torch.uint8
    assert img.is_contiguous()


def test_pixel_defaults():
    assert pixel_obs(level()).shape == (1, 64, 64, 3)


def test_pixel_tiles_have_their_colours():
    s = level(x=AX, y=AY)
    placed = {
        (8, 5): (WALL, "wall"),
        (9, 7): (WALL_TOP, "wall_top"),
        (12, 4): (LAVA, "lava"),
        (13, 4): (LAVA_TOP, "lava_top"),
        (12, 8): (SAW, "saw"),
        (8, 3): (CRATE, "crate"),
        (13, 6): (BARRIER, "background"),
    }
    for (x, y), (t, _) in placed.items():
        s.grid[0, x, y] = t
    img = pixel_obs(s)[0]
    pal = PALETTE[0]
    for (x, y), (_, name) in placed.items():
        r, c = tile_px(x, y)
        block = img[r - 2 : r + 3, c - 2 : c + 3].reshape(-1, 3)  # the tile's 5x5 block
        assert (block == pal[COL[name]]).all(), (x, y)
    # The wall tile left of the agent is left of the centre; between them is background.
    assert torch.equal(img[32, 22], pal[COL["wall"]])
    assert torch.equal(img[32, 27], pal[COL["background"]])
    # The floor (row 0 of the grid) fills the image rows of y = 0.
    assert (img[55:60] == pal[COL["wall"]]).all()


def test_pixel_tile_blocks_follow_subtile_position():
    s = level(2, x=10.5, y=5.5)
    s.agent_x[1] = 10.75  # 1.25 px further right: the world moves 1 px left
    s.grid[:, 8, 5] = WALL
    img = pixel_obs(s)
    wall = PALETTE[0, COL["wall"]]
    assert (img[0, 32] == wall).all(-1).nonzero().flatten().tolist() == [19, 20, 21, 22, 23]
    assert (img[1, 32] == wall).all(-1).nonzero().flatten().tolist() == [18, 19, 20, 21, 22]


def test_pixel_out_of_grid_is_wall():
    s = EnvState.zeros(1, "cpu")  # all EMPTY, no walls
    s.agent_x.fill_(1.5)
    s.agent_y.fill_(1.5)
    s.coin_x.fill_(30)
    s.coin_y.fill_(30)
    img = pixel_obs(s)[0]
    wall, bg = PALETTE[0, COL["wall"]], PALETTE[0, COL["background"]]
    # x < 0 starts 1.5 tiles (7.5 px) left of the centre, y < 0 1.5 tiles below it.
    assert (img[:, :24] == wall).all()
    assert (img[40:] == wall).all()
    assert (img[:40, 24:29] == bg).all()
    assert (img[:40, 24:] != wall).any(-1).all()


@pytest.mark.parametrize("theme", range(NUM_THEMES))
def test_pixel_theme_colours(theme):
    s = level(x=AX, y=AY)
    s.theme.fill_(theme)
    img = pixel_obs(s)[0]
    assert torch.equal(img[5, 5], PALETTE[theme, COL["background"]])
    assert torch.equal(img[tile_px(10, 0)], PALETTE[theme, COL["wall"]])
    assert torch.equal(img[32, 31], AGENT_COLOURS[theme])


def test_themes_differ_in_background_and_ground():
    s = level(NUM_THEMES, x=AX, y=AY)
    s.theme = torch.arange(NUM_THEMES)
    img = pixel_obs(s)
    backgrounds = {tuple(img[t, 5, 5].tolist()) for t in range(NUM_THEMES)}
    walls = {tuple(img[t, 60, 5].tolist()) for t in range(NUM_THEMES)}
    assert len(backgrounds) == len(walls) == NUM_THEMES


def test_colours_are_distinct_within_each_theme():
    for t in range(NUM_THEMES):
        drawn = [tuple(c) for c in PALETTE[t].tolist()]
        drawn += [COIN_COLOUR, ENEMY_COLOUR, tuple(AGENT_COLOURS[t].tolist())]
        assert len(set(drawn)) == len(drawn) == len(TILE_COLOUR_NAMES) + 3, t


def test_pixel_agent_at_the_centre():
    s = level(2, x=30.3, y=20.9)
    s.facing_right = torch.tensor([True, False])
    img = pixel_obs(s)
    body = AGENT_COLOURS[0]
    for i in range(2):
        is_body = (img[i] == body).all(-1)
        rows = is_body.any(1).nonzero().flatten().tolist()
        cols = is_body.any(0).nonzero().flatten().tolist()
        # 2 AGENT_RX x 2 AGENT_RY = 1 x 1.157 tiles at 5 px per tile, around (32, 32)
        assert rows == list(range(29, 35))
        assert cols == list(range(29, 34))
    assert 2 * AGENT_RX * 5 == 5 and 5 < 2 * AGENT_RY * 5 < 6
    # The eye (black) is on the side the agent faces.
    eye = rgb((0, 0, 0))
    assert torch.equal(img[0, 30, 32], eye) and torch.equal(img[0, 30, 30], body)
    assert torch.equal(img[1, 30, 30], eye) and torch.equal(img[1, 30, 32], body)


def test_pixel_coin_is_a_gold_disc_in_its_tile():
    s = level(x=AX, y=AY)
    s.coin_x[0], s.coin_y[0] = 13, 6
    img = pixel_obs(s)[0]
    r, c = tile_px(13, 6)
    gold = (img == rgb(COIN_COLOUR)).all(-1)
    block = gold[r - 2 : r + 3, c - 2 : c + 3]
    assert int(block.sum()) == int(gold.sum()) == 21  # the 5x5 block without its corners
    assert bool(block[2, 2]) and not block[0, 0] and not block[4, 4]
    assert torch.equal(img[r - 2, c - 2], PALETTE[0, COL["background"]])


def test_pixel_enemies_at_continuous_positions():
    s = level(3, x=AX, y=AY)
    s.enemy_alive[:, 0] = True
    s.enemy_x[:, 0] = torch.tensor([7.5, 7.7, 7.5])  # second: 1 px to the right
    s.enemy_y[:, 0] = torch.tensor([7.5, 7.5, 7.3])  # third: 1 px lower
    s.enemy_x[:, 1], s.enemy_y[:, 1] = 12.5, 5.5  # dead: not drawn
    img = pixel_obs(s)
    purple = (img == rgb(ENEMY_COLOUR)).all(-1)
    r, c = tile_px(7, 7)
    for i, (dr, dc) in enumerate([(0, 0), (0, 1), (1, 0)]):
        assert purple[i].any(1).nonzero().flatten().tolist() == list(range(r - 2 + dr, r + 3 + dr))
        assert purple[i].any(0).nonzero().flatten().tolist() == list(range(c - 2 + dc, c + 3 + dc))
        assert int(purple[i].sum()) == 25


def test_pixel_many_enemies_and_offscreen_ones():
    s = level(x=30.5, y=30.5)
    s.enemy_alive[0] = True
    s.enemy_x[0] = 30.5 + torch.arange(MAX_ENEMIES, dtype=torch.float32) - 17  # a long row
    s.enemy_y[0] = 33.5
    purple = (pixel_obs(s)[0] == rgb(ENEMY_COLOUR)).all(-1)
    assert int(purple.any(1).sum()) == 5  # one enemy high
    assert purple.any(0).all()  # cut at both image borders


def reference_pixels(s: EnvState, size: int, tiles: float) -> torch.Tensor:
    """Pixel-by-pixel restatement of the pixel observation in exact arithmetic: a pixel
    shows what its centre, ((p + 0.5) / size - 1/2) * tiles from the agent, falls in."""
    # (the offsets, like observation.py's, rounded once to float64)
    offset = [
        Fraction(float(Fraction(2 * p + 1 - size, 2 * size) * Fraction(tiles))) for p in range(size)
    ]
    colour_of = {WALL: "wall", WALL_TOP: "wall_top", EMPTY: "background"}
    colour_of |= {BARRIER: "background", LAVA: "lava", LAVA_TOP: "lava_top", SAW: "saw"}
    colour_of |= {CRATE: "crate"}
    out = torch.zeros(s.num_envs, size, size, 3, dtype=torch.uint8)
    eye = max(1, round(size / tiles / 5))
    radius2 = Fraction(0.52) ** 2
    rx, ry = Fraction(AGENT_RX), Fraction(AGENT_RY)
    for i in range(s.num_envs):
        ax, ay = Fraction(float(s.agent_x[i])), Fraction(float(s.agent_y[i]))
        cx, cy = int(s.coin_x[i]), int(s.coin_y[i])
        th = int(s.theme[i])
        enemies = [
            (Fraction(float(s.enemy_x[i, e])) - ax, Fraction(float(s.enemy_y[i, e])) - ay)
            for e in range(MAX_ENEMIES)
            if s.enemy_alive[i, e]
        ]
        for py in range(size):
            dy = -offset[py]
            for px in range(size):
                dx = offset[px]
                x, y = math.floor(ax + dx), math.floor(ay + dy)
                inside = 0 <= x < GRID_W and 0 <= y < GRID_H
                colour = PALETTE[th, COL[colour_of[int(s.grid[i, x, y]) if inside else WALL]]]
                coin_dx, coin_dy = ax + dx - cx - Fraction(1, 2), ay + dy - cy - Fraction(1, 2)
                if (x, y) == (cx, cy) and coin_dx**2 + coin_dy**2 <= radius2:
                    colour = rgb(COIN_COLOUR)
                for ex, ey in enemies:
                    if ex - Fraction(1, 2) <= dx < ex + Fraction(1, 2) and (
                        ey - Fraction(1, 2) <= dy < ey + Fraction(1, 2)
                    ):
                        colour = rgb(ENEMY_COLOUR)
                if -rx <= dx < rx and -ry <= dy < ry:
                    colour = AGENT_COLOURS[th]
                out[i, py, px] = colour
        cols = [p for p in range(size) if -rx <= offset[p] < rx]
        rows = [p for p in range(size) if -ry <= -offset[p] < ry]
        c0 = cols[-1] + 1 - 2 * eye if s.facing_right[i] else cols[0] + eye
        out[i, rows[0] + eye : rows[0] + 2 * eye, c0 : c0 + eye] = 0
    return out


@pytest.mark.parametrize("seed, size, tiles", [(0, 64, 12.8), (1, 24, 6.0), (2, 30, 9.5)])
def test_pixel_matches_reference(seed, size, tiles):
    s = random_state(2, seed)
    # Also agents, coins and enemies at tile centres, where pixel centres fall exactly
    # on tile edges.
    s.agent_x[0], s.agent_y[0] = 20.5, 9.5
    s.coin_x[0], s.coin_y[0] = 22, 9
    s.enemy_alive[0, :2] = True
    s.enemy_x[0, :2] = torch.tensor([18.5, 23.0])
    s.enemy_y[0, :2] = torch.tensor([11.5, 8.0])
    assert torch.equal(pixel_obs(s, size, tiles), reference_pixels(s, size, tiles))


def test_pixel_batch_equals_single_envs():
    s = random_state(7, seed=5)
    batch = pixel_obs(s)
    for i in range(s.num_envs):
        assert torch.equal(batch[i : i + 1], pixel_obs(s.index(slice(i, i + 1))))


# --- Human frame -----------------------------------------------------------------------------


def test_human_frame_shape_and_type():
    frame = human_frame(random_state(3), 1)
    assert isinstance(frame, np.ndarray)
    assert frame.shape == (512, 512, 3) and frame.dtype == np.uint8
    assert human_frame(random_state(2), -1, size=128, tiles_across=10.0).shape == (128, 128, 3)


def test_human_frame_rejects_bad_index():
    with pytest.raises(IndexError):
        human_frame(level(2), 2)


def test_human_frame_is_a_larger_pixel_obs_plus_end_marker():
    s = level(2, x=10.5, y=5.5)
    s.theme[1] = 3
    s.end_x[1], s.end_y[1] = 14, 5  # visible: 3.5 tiles right of the agent
    s.coin_x[1], s.coin_y[1] = 20, 8  # the coin was moved away from the end
    # End off-screen: exactly the pixel observation at the larger size.
    plain0 = pixel_obs(s.index(slice(0, 1)), 512, 20.0)[0]
    assert np.array_equal(human_frame(s, 0), plain0.numpy())
    frame = torch.from_numpy(human_frame(s, 1))
    plain = pixel_obs(s.index(slice(1, 2)), 512, 20.0)[0]
    changed = (frame != plain).any(-1)
    rows = changed.any(1).nonzero().flatten().tolist()
    cols = changed.any(0).nonzero().flatten().tolist()
    # 25.6 px per tile: the tile's x offsets [3.5, 4.5) are columns 346..370, its y
    # offsets [-0.5, 0.5) rows 243..268.
    assert (cols[0], cols[-1], rows[0], rows[-1]) == (346, 370, 243, 268)
    assert not changed[256, 358]  # an outline, not a filled tile
    marks = {tuple(c) for c in frame[changed].tolist()}
    assert marks == set(END_MARKER_COLOURS)


# --- Devices --------------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    s = random_state(64, seed=7)
    g = EnvState(**{k: v.cuda() for k, v in vars(s).items()})
    assert torch.equal(symbolic_obs(g, 13).cpu(), symbolic_obs(s, 13))
    assert torch.equal(pixel_obs(g).cpu(), pixel_obs(s))
    assert np.array_equal(human_frame(g, 3), human_frame(s, 3))


def test_module_exports():
    for name in render.__all__:
        assert hasattr(render, name)


@pytest.mark.parametrize("n", [1, 2, 5, 16])
def test_cpu_and_accelerator_paths_give_the_same_results(monkeypatch, n):
    # The CPU picks alive enemies out first (8 mask bytes at a time in large batches)
    # and, from a thousand environments, writes symbolic cells two per row, in pairs
    # that straddle environments; other devices write everything, the rest to a dump
    # slot, one cell per row.  Run the CPU's small- and large-batch paths and the
    # accelerator's on odd batches, agents off the grid, views of several sizes and
    # both crops.
    s = random_state(n, seed=11 + n)
    s.enemy_alive[:, :6] = True
    s.agent_x[0] = -2.5
    views = (3, 7, 13)

    def observe():
        symbolic = [symbolic_obs(s, v) for v in views]
        symbolic += [symbolic_obs(s, v, padded=padded_classes(s.grid, v)) for v in views]
        return symbolic + [pixel_obs(s)], human_frame(s, n - 1)

    small = observe()
    monkeypatch.setattr(render, "_PAIRS_FROM", 1)
    monkeypatch.setattr(state_module, "_WORD_SCAN_FROM", 1)
    large = observe()
    monkeypatch.setattr(render, "_CPU_PATHS", False)
    accelerator = observe()
    for got in (large, accelerator):
        assert all(torch.equal(a, b) for a, b in zip(got[0], small[0], strict=True))
        assert np.array_equal(got[1], small[1])


def test_true_positions_is_nonzero(monkeypatch):
    monkeypatch.setattr(state_module, "_WORD_SCAN_FROM", 1)
    g = torch.Generator().manual_seed(3)
    for size, density in [(0, 0.5), (5, 0.5), (573, 0.02), (4096, 0.0), (1003, 1.0)]:
        mask = torch.rand(size + 3, generator=g) < density
        for view in (mask, mask[1:], mask[3:]):  # word-aligned or not
            assert torch.equal(state_module._true_positions(view), view.nonzero().squeeze(1))


def test_empty_batch():
    s = EnvState.zeros(0, "cpu")
    assert symbolic_obs(s, 13).shape == (0, 13, 13, SYMBOLIC_CHANNELS)
    assert pixel_obs(s).shape == (0, 64, 64, 3)


def test_works_in_deterministic_mode():
    s = random_state(8, seed=13)
    expect = symbolic_obs(s, 13), pixel_obs(s)
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        got = symbolic_obs(s, 13), pixel_obs(s)
    finally:
        torch.use_deterministic_algorithms(previous)
    assert torch.equal(got[0], expect[0]) and torch.equal(got[1], expect[1])
