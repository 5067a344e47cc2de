"""The stock-procgen Maze backend: state codec, cheese placement, corner tracking, contract."""

from __future__ import annotations

import contextlib
import io
import struct
import subprocess
import sys
from collections import deque

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import coinrun_mg  # noqa: F401  (registers the environments)
from coinrun_mg.envs.maze import procgen_state as ps
from coinrun_mg.envs.maze.procgen_env import (
    DOWN,
    INFO_KEYS,
    INSTALL_COMMAND,
    LEFT,
    RIGHT,
    UP,
    ProcgenMazeEnv,
    ProcgenMazeVectorEnv,
    cheese_moved,
)

with contextlib.redirect_stderr(io.StringIO()):  # procgen's old gym prints a banner
    procgen = pytest.importorskip("procgen")

pytestmark = pytest.mark.procgen

ENV_ID = "coinrun_mg/ProcgenMaze-v0"
NOOP = 4
MOVES = ((-1, 0, LEFT), (1, 0, RIGHT), (0, -1, DOWN), (0, 1, UP))


def _raw(num=1, seed=0, env_name="maze", **kwargs):
    return procgen.ProcgenGym3Env(num=num, env_name=env_name, rand_seed=seed, **kwargs)


def _fresh_states(num_levels: int, mode: str, seed: int = 0) -> list[bytes]:
    """States of ``num_levels`` fresh levels: a timeout of 1 makes every step a new level."""
    env = _raw(num=16, seed=seed, distribution_mode=mode)
    short = []
    for s in env.callmethod("get_state"):
        st = ps.parse_state(s)
        st.game["timeout"] = 1
        short.append(st.serialize())
    env.callmethod("set_state", short)
    out = list(env.callmethod("get_state"))
    while len(out) < num_levels:
        env.act(np.full(16, NOOP, dtype=np.int32))
        out.extend(env.callmethod("get_state"))
    return out[:num_levels]


def bfs_actions(open_cells: np.ndarray, start, goal) -> list[int]:
    """procgen actions along the shortest path from ``start`` to ``goal`` (``[x, y]`` grid)."""
    n = open_cells.shape[0]
    prev = {tuple(start): None}
    queue = deque([tuple(start)])
    while queue:
        x, y = queue.popleft()
        if (x, y) == tuple(goal):
            break
        for dx, dy, a in MOVES:
            nxt = (x + dx, y + dy)
            if 0 <= nxt[0] < n and 0 <= nxt[1] < n and open_cells[nxt] and nxt not in prev:
                prev[nxt] = ((x, y), a)
                queue.append(nxt)
    actions, cell = [], tuple(goal)
    while prev[cell] is not None:
        cell, a = prev[cell]
        actions.append(a)
    return actions[::-1]


def _level_starts(venv, batches: int, seed: int = 17):
    """Yield ``(env index, info, state)`` at the start of every level, reading procgen's
    state; with ``max_episode_steps=1`` every other step starts new levels everywhere."""
    core = venv.unwrapped.core
    _, info = venv.reset(seed=seed)
    n = venv.unwrapped.num_envs
    for _ in range(batches):
        for i in range(n):
            yield i, {k: info[k][i] for k in INFO_KEYS}, ps.parse_state(core._get_state(i))
        venv.step(np.full(n, NOOP))
        _, _, _, _, info = venv.step(np.full(n, NOOP))


# --------------------------------------------------------------------------------------
# Codec
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["easy", "hard"])
def test_codec_round_trips_fresh_and_running_states(mode):
    world = {"easy": 15, "hard": 25}[mode]
    states = _fresh_states(160, mode, seed=5)
    for s in states:
        st = ps.parse_state(s)
        assert st.serialize() == s
        assert st.world_dim == world and st.grid.shape == (world, world)
        n, m = st.maze_dim, st.margin
        assert n % 2 == 1 and 3 <= n <= world and m == (world - n) // 2
        # procgen's Kruskal maze in the parsed orientation: even-even cells open,
        # odd-odd cells wall, everything outside the maze wall, one cheese, not the start.
        maze = st.maze
        assert (maze[::2, ::2] != ps.WALL).all() and (maze[1::2, 1::2] == ps.WALL).all()
        outside = np.ones((world, world), dtype=bool)
        outside[m : m + n, m : m + n] = False
        assert (st.grid[outside] == ps.WALL).all()
        assert ps.open_grid(st).sum() == 2 * ((n + 1) // 2) ** 2 - 1  # a tree
        assert len(st.cheese_cells()) == 1 and tuple(st.cheese_cells()[0]) != (0, 0)
        assert st.agent_cell() == (0, 0) and float(st.agent["x"]) == m + 0.5
    env = _raw(num=4, seed=9, distribution_mode=mode)
    rng = np.random.default_rng(0)
    for _ in range(30):  # mid-episode states: the agent has moved
        env.act(rng.choice([LEFT, DOWN, UP, RIGHT], 4).astype(np.int32))
    running = env.callmethod("get_state")
    for s, info in zip(running, env.get_info()):
        st = ps.parse_state(s)
        assert st.serialize() == s and st.level_seed == info["level_seed"]
    # Through procgen: set the re-serialized states and read them back unchanged.
    env.callmethod("set_state", [ps.parse_state(s).serialize() for s in running])
    assert env.callmethod("get_state") == running


def test_codec_fields_match_procgen():
    env = _raw(num=2, seed=3, num_levels=50, start_level=1000, distribution_mode="easy")
    for _ in range(7):
        env.act(np.full(2, NOOP, dtype=np.int32))
    for s, info in zip(env.callmethod("get_state"), env.get_info()):
        st = ps.parse_state(s)
        assert st.level_seed == info["level_seed"] and 1000 <= st.level_seed < 1050
        assert (int(st.options["level_seed_low"]), int(st.options["level_seed_high"])) == (
            1000,
            1050,
        )
        assert int(st.options["distribution_mode"]) == 0
        assert int(st.game["cur_time"]) == 7 and int(st.game["timeout"]) == 500


def _corruptions(s: bytes) -> dict[str, tuple[bytes, str]]:
    """Broken variants of a maze state and a word the refusal must contain."""
    n = len(s)
    wd = struct.unpack_from("<i", s, n - 8)[0]
    grid_w_at = n - 12 - 4 * wd * wd - 12  # w, h, count, then the cells
    flip = lambda at, v: s[:at] + struct.pack("<i", v) + s[at + 4 :]  # noqa: E731
    return {
        "empty": (b"", "truncated"),
        "truncated": (s[:-1], "truncated"),
        "cut in the header": (s[:200], "truncated"),
        "wrong marker": (s[:-4] + struct.pack("<I", 0xDEADBEEF), "end marker"),
        "extra bytes": (s + b"\0\0\0\0", "unexpected bytes"),
        "even maze_dim": (flip(n - 12, 8), "maze_dim"),
        "maze_dim too big": (flip(n - 12, wd + 2), "maze_dim"),
        "world_dim 31": (flip(n - 8, 31), "world_dim"),
        "grid width": (flip(grid_w_at, wd - 1), "grid"),
        "version 1": (flip(0, 1), "version"),
    }


def test_codec_refuses_foreign_layouts():
    s = _raw(num=1, seed=4).callmethod("get_state")[0]
    for name, (bad, word) in _corruptions(s).items():
        with pytest.raises(ValueError, match="not a procgen maze state") as err:
            ps.parse_state(bad)
        assert word in str(err.value), name
        assert "\n" not in str(err.value)
    # Another game's state (CoinRun's, as the CoinRun backend reads; heist has a maze too).
    for game in ("coinrun", "heist"):
        foreign = _raw(num=1, seed=0, env_name=game).callmethod("get_state")[0]
        with pytest.raises(ValueError, match=f"it is a state of procgen game '{game}'"):
            ps.parse_state(foreign)
    # A second entity (the agent must be alone) is refused too.
    st = ps.parse_state(s)
    st.entities = np.concatenate([st.entities, st.entities])
    with pytest.raises(ValueError, match="expected the agent alone"):
        ps.parse_state(st.serialize())


def test_move_cheese_is_what_procgen_loads():
    env = _raw(num=1, seed=6, distribution_mode="hard")
    st = ps.parse_state(env.callmethod("get_state")[0])
    n = st.maze_dim
    st.move_cheese(n - 1, n - 1)
    env.callmethod("set_state", [st.serialize()])
    back = ps.parse_state(env.callmethod("get_state")[0])
    assert back.cheese_cells().tolist() == [[n - 1, n - 1]]
    with pytest.raises(ValueError, match="wall"):
        back.move_cheese(1, 1)  # odd-odd: always a wall


# --------------------------------------------------------------------------------------
# Placement
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["easy", "hard"])
def test_corner_placement_inside_the_region_and_uniform(mode):
    k = 5
    venv = ProcgenMazeVectorEnv(
        num_envs=16, corner_size=k, distribution_mode=mode, max_episode_steps=1
    )
    observed = np.zeros((k, k))
    expected = np.zeros((k, k))
    levels = 0
    for _, info, st in _level_starts(venv, 40):
        n = st.maze_dim
        x, y = int(info["cheese_x"]), int(info["cheese_y"])
        assert not info["cheese_moved"] and info["maze_dim"] == n
        assert st.cheese_cells().tolist() == [[x, y]]  # what procgen holds
        lo = n - min(k, n)
        assert x >= lo and y >= lo and (x, y) != (0, 0)
        # Uniform over the region's open cells: each open cell (by its offset from the
        # top-right corner) expects 1 / (open cells in this level's region).
        cells = ps.corner_cells(ps.open_grid(st), k)
        for cx, cy in cells.tolist():
            expected[n - 1 - cx, n - 1 - cy] += 1 / len(cells)
        observed[n - 1 - x, n - 1 - y] += 1
        levels += 1
    venv.close()
    assert levels == 640
    used = expected > 0
    assert (observed[~used] == 0).all()
    chi2 = (((observed - expected) ** 2)[used] / expected[used]).sum()
    # p = 0.001 for 20 degrees of freedom: 21 offsets (the 4 odd-odd ones are walls).
    assert used.sum() == 21 and chi2 < 45.3, chi2


def test_corner_size_one_is_the_corner_cell_and_large_sizes_cover_the_maze():
    venv = ProcgenMazeVectorEnv(num_envs=8, corner_size=1, max_episode_steps=1)
    for _, info, st in _level_starts(venv, 6):
        n = st.maze_dim
        assert (info["cheese_x"], info["cheese_y"]) == (n - 1, n - 1)
        assert st.cheese_cells().tolist() == [[n - 1, n - 1]]
    venv.close()
    venv = ProcgenMazeVectorEnv(
        num_envs=8, corner_size=40, distribution_mode="easy", max_episode_steps=1
    )
    spots = set()
    for _, info, st in _level_starts(venv, 6):
        x, y = int(info["cheese_x"]), int(info["cheese_y"])
        assert ps.open_grid(st)[x, y] and (x, y) != (0, 0)
        assert info["reached_corner"]  # the region is the whole maze, start included
        spots.add((x, y))
    assert len(spots) > 20  # spread over the maze, not one corner
    venv.close()


def test_stock_placement_and_walls_are_procgen_s():
    """Moved (rand share) levels keep procgen's cheese; corner levels keep its walls."""
    for fraction in (1.0, 0.0):
        venv = ProcgenMazeVectorEnv(
            num_envs=4, rand_fraction=fraction, corner_size=3, max_episode_steps=1
        )
        for _, info, st in _level_starts(venv, 3):
            seed = int(info["level_seed"])
            raw = ps.parse_state(
                _raw(num=1, seed=0, num_levels=1, start_level=seed).callmethod("get_state")[0]
            )
            assert raw.level_seed == seed
            assert info["cheese_moved"] == (fraction == 1.0)
            if fraction == 1.0:
                assert np.array_equal(st.cells, raw.cells)
            else:
                assert np.array_equal(ps.open_grid(st), ps.open_grid(raw))
                assert st.cheese_cells().tolist() == [[info["cheese_x"], info["cheese_y"]]]
        venv.close()


def test_moved_share_statistics():
    seeds = np.arange(98_765, 98_765 + 4000)
    for fraction in (0.02, 0.3):
        moved = cheese_moved(seeds, fraction)
        sd = np.sqrt(len(seeds) * fraction * (1 - fraction))
        assert abs(moved.sum() - fraction * len(seeds)) < 4 * sd
    assert not cheese_moved(seeds, 0.0).any() and cheese_moved(seeds, 1.0).all()
    # Deterministic, and nested: a level moved at 2% is moved at 30% too.
    assert (cheese_moved(seeds, 0.3) == cheese_moved(seeds, 0.3)).all()
    assert not (cheese_moved(seeds, 0.02) & ~cheese_moved(seeds, 0.3)).any()


def test_moved_share_in_the_env_follows_the_level_seed():
    venv = ProcgenMazeVectorEnv(num_envs=16, rand_fraction=0.3, corner_size=1, max_episode_steps=1)
    seeds, moved = [], []
    for _, info, st in _level_starts(venv, 10):
        assert info["level_seed"] == st.level_seed
        seeds.append(info["level_seed"])
        moved.append(info["cheese_moved"])
        n = st.maze_dim
        if not info["cheese_moved"]:
            assert st.cheese_cells().tolist() == [[n - 1, n - 1]]
    venv.close()
    moved = np.array(moved)
    assert (moved == cheese_moved(seeds, 0.3)).all()
    sd = np.sqrt(len(moved) * 0.3 * 0.7)
    assert abs(moved.sum() - 0.3 * len(moved)) < 4 * sd


# --------------------------------------------------------------------------------------
# Episodes: the cheese, the corner, the timeout
# --------------------------------------------------------------------------------------


def _walk(venv, plans: list[list[int]], check_agent: bool = True):
    """Play each env's plan (no-ops after it) until every plan is done or its episode
    ended; yields ``(step index, obs, reward, terminated, truncated, info, alive)`` where
    ``alive`` marks the envs still in their first episode before this step.  With
    ``check_agent``, every live env's followed cell is compared with procgen's state."""
    core = venv.unwrapped.core
    n = len(plans)
    alive = np.ones(n, dtype=bool)
    for t in range(max(len(p) for p in plans)):
        a = np.array([p[t] if t < len(p) else NOOP for p in plans])
        out = venv.step(a)
        yield (t, *out, alive.copy())
        terminated, truncated = out[2], out[3]
        alive &= ~(terminated | truncated)
        if check_agent:
            for i in np.flatnonzero(alive).tolist():
                cell = ps.parse_state(core._get_state(i)).agent_cell()
                assert cell == (core.agent_x[i], core.agent_y[i])
        if not alive.any():
            return


@pytest.mark.parametrize("mode", ["easy", "hard"])
def test_followed_agent_is_procgen_s_under_random_actions(mode):
    """All 15 actions, bumps into walls included: the cell the core follows from the
    actions is the one in procgen's state after every step."""
    venv = ProcgenMazeVectorEnv(num_envs=8, rand_fraction=1.0, distribution_mode=mode)
    venv.reset(seed=41)
    rng = np.random.default_rng(4)
    plans = [rng.integers(0, 15, 150).tolist() for _ in range(8)]
    moved = 0
    for *_, alive in _walk(venv, plans):
        core = venv.unwrapped.core
        moved += int((alive & ((core.agent_x > 0) | (core.agent_y > 0))).sum())
    assert moved >= 200  # the agents did leave the start
    venv.close()


def test_world_edge_blocks_in_mazes_that_fill_the_world():
    """Levels whose maze fills the world (no wall margin): moves off the world are blocked
    (procgen's out-of-bounds object is a wall), in the followed cell as in procgen."""
    for mode, levels in (("easy", [6, 7, 12]), ("hard", [17, 40, 43])):
        venv = ProcgenMazeVectorEnv(num_envs=3, rand_fraction=1.0, distribution_mode=mode)
        venv.reset(seed=0)
        _, info = venv.reset(options={"level_seeds": levels})
        core = venv.unwrapped.core
        assert (info["maze_dim"] == core.config.world_dim).all() and (core.margin == 0).all()
        # Push into the bottom-left edge, then along the bottom row and into the right edge.
        n = core.config.world_dim
        plans = []
        for i in range(3):
            to_corner = bfs_actions(core.open_cells(i), (0, 0), (n - 1, 0))
            plans.append([LEFT, DOWN, 1, 2] + to_corner + [RIGHT, 7, 8, DOWN])
        survived = np.ones(3, dtype=bool)  # not ended by a cheese on the way
        for _, _, _, terminated, truncated, _, _ in _walk(venv, plans):  # checks each step
            survived &= ~(terminated | truncated)
        assert survived.any()
        for i in np.flatnonzero(survived).tolist():
            assert (core.agent_x[i], core.agent_y[i]) == (n - 1, 0)
        venv.close()


@pytest.mark.parametrize("mode, fraction", [("easy", 1.0), ("hard", 1.0), ("hard", 0.0)])
def test_walking_to_the_cheese_pays_10_and_ends(mode, fraction):
    venv = ProcgenMazeVectorEnv(
        num_envs=6, rand_fraction=fraction, corner_size=5, distribution_mode=mode
    )
    _, info = venv.reset(seed=23)
    core = venv.unwrapped.core
    plans = [
        bfs_actions(core.open_cells(i), (0, 0), (info["cheese_x"][i], info["cheese_y"][i]))
        for i in range(6)
    ]
    seeds = info["level_seed"].copy()
    for t, _, reward, terminated, truncated, info, alive in _walk(venv, plans):
        arrive = alive & (np.array([len(p) for p in plans]) == t + 1)
        assert (reward[arrive] == 10).all() and terminated[arrive].all()
        assert info["cheese_collected"][arrive].all() and not truncated.any()
        assert (reward[alive & ~arrive] == 0).all() and not terminated[alive & ~arrive].any()
    # The next step starts the next level (NEXT_STEP autoreset): new seed, nothing paid.
    _, reward, terminated, _, info = venv.step(np.full(6, NOOP))
    assert (info["level_seed"] != seeds).all() and (reward == 0).all() and not terminated.any()
    assert (core.agent_x == 0).all() and (core.agent_y == 0).all()
    venv.close()


def _corner_plans(venv, info, k):
    """Per env: a path into the corner region that avoids the cheese, then three steps back
    along it; None where the cheese is on the way."""
    core = venv.unwrapped.core
    plans = []
    for i in range(venv.num_envs):
        n = int(info["maze_dim"][i])
        path = bfs_actions(core.open_cells(i), (0, 0), (n - 1, n - 1))
        cells, (x, y) = [], (0, 0)
        for a in path:
            dx, dy = {LEFT: (-1, 0), RIGHT: (1, 0), DOWN: (0, -1), UP: (0, 1)}[a]
            x, y = x + dx, y + dy
            cells.append((x, y))
        if (int(info["cheese_x"][i]), int(info["cheese_y"][i])) in cells:
            plans.append(None)
            continue
        lo = n - min(k, n)
        enter = next(j for j, (cx, cy) in enumerate(cells) if cx >= lo and cy >= lo)
        back = [{LEFT: RIGHT, RIGHT: LEFT, UP: DOWN, DOWN: UP}[a] for a in path[::-1][:3]]
        plans.append((path + back, enter))
    return plans


def test_reached_corner_is_sticky():
    k = 3
    venv = ProcgenMazeVectorEnv(num_envs=8, rand_fraction=1.0, corner_size=k)
    _, info = venv.reset(seed=31)
    assert not info["reached_corner"].any()
    plans = _corner_plans(venv, info, k)
    usable = np.array([p is not None for p in plans])
    assert usable.sum() >= 4
    actions = [p[0] if p else [NOOP] for p in plans]
    enter = np.array([p[1] if p else 10**6 for p in plans])
    left_again = False
    for t, _, reward, terminated, truncated, info, alive in _walk(venv, actions):
        check = alive & usable
        assert (info["reached_corner"][check] == (t >= enter[check])).all()
        assert not (terminated | truncated)[check].any() and (reward[check] == 0).all()
        core = venv.unwrapped.core
        lo = core.corner_lo
        outside = (core.agent_x < lo) | (core.agent_y < lo)
        left_again |= bool((check & outside & info["reached_corner"]).any())
    assert left_again  # stayed True after stepping back out of the region
    venv.close()


def test_corner_terminates_while_the_cheese_lies_elsewhere():
    k = 3
    venv = ProcgenMazeVectorEnv(
        num_envs=8, rand_fraction=1.0, corner_size=k, corner_terminates=True
    )
    _, info = venv.reset(seed=31)
    plans = _corner_plans(venv, info, k)
    lo = info["maze_dim"] - np.minimum(k, info["maze_dim"])
    elsewhere = (info["cheese_x"] < lo) | (info["cheese_y"] < lo)
    usable = np.array([p is not None for p in plans]) & elsewhere
    enter = np.array([p[1] if p else 10**6 for p in plans])
    seeds = info["level_seed"].copy()
    ended = np.zeros(8, dtype=bool)
    for t, _, reward, terminated, _, info, alive in _walk(
        venv, [p[0] if p else [NOOP] for p in plans], check_agent=False
    ):
        check = alive & usable
        assert (terminated[check] == (t == enter[check])).all()
        assert (reward[check] == 0).all() and not info["cheese_collected"][check].any()
        assert (info["reached_corner"][check & terminated]).all()
        ended |= check & terminated
        if (ended == usable).all():
            break
    assert ended.sum() >= 4
    _, reward, terminated, truncated, info = venv.step(np.full(8, NOOP))
    assert (info["level_seed"][ended] != seeds[ended]).all()
    # A new level starts in its corner region only when the region covers the whole maze.
    starts_inside = info["maze_dim"][ended] <= k
    assert (info["reached_corner"][ended] == starts_inside).all() and (reward[ended] == 0).all()
    assert not (terminated | truncated)[ended].any()
    venv.close()
    # On corner levels (the cheese in the region) entering the region does not end it.
    venv = ProcgenMazeVectorEnv(num_envs=6, corner_size=k, corner_terminates=True)
    _, info = venv.reset(seed=32)
    core = venv.unwrapped.core
    plans = []
    for i in range(6):
        cand = [
            (x, y)
            for x, y in ps.corner_cells(core.open_cells(i), k).tolist()
            if (x, y) != (info["cheese_x"][i], info["cheese_y"][i])
        ]
        plans.append(bfs_actions(core.open_cells(i), (0, 0), cand[0]) + [NOOP] * 2)
    entered = np.zeros(6, dtype=bool)
    for _, _, _, terminated, _, info, alive in _walk(venv, plans, check_agent=False):
        entered |= alive & info["reached_corner"] & ~info["cheese_collected"]
        assert not (terminated & ~info["cheese_collected"])[alive].any()
    assert entered.sum() >= 3
    venv.close()


def test_start_pending_episodes_restarts_at_once():
    """The same-step autoreset (Stable-Baselines3's): after the cheese, the next level
    starts at once and the following action is played, not ignored."""
    venv = ProcgenMazeVectorEnv(num_envs=2, distribution_mode="easy", corner_size=1)
    core = venv.unwrapped.core
    _, info = venv.reset(seed=3)
    plan = bfs_actions(core.open_cells(0), (0, 0), (info["cheese_x"][0], info["cheese_y"][0]))
    for a in plan:
        _, reward, terminated, _, info = venv.step(np.array([a, NOOP]))
    assert terminated[0] and reward[0] == 10 and not terminated[1]
    seed0 = int(info["level_seed"][0])
    obs, restarted = core.start_pending_episodes()
    assert restarted.tolist() == [True, False]
    assert int(core.level_seed[0]) != seed0 and (core.agent_x[0], core.agent_y[0]) == (0, 0)
    raw = ps.parse_state(core._get_state(0))
    assert raw.level_seed == core.level_seed[0] and raw.agent_cell() == (0, 0)
    first_move = UP if core.open_cells(0)[0, 1] else RIGHT
    _, reward, terminated, truncated, info = venv.step(np.array([first_move, NOOP]))
    assert int(info["level_seed"][0]) == raw.level_seed and not (terminated | truncated).any()
    assert (core.agent_x[0], core.agent_y[0]) != (0, 0)
    assert ps.parse_state(core._get_state(0)).agent_cell() == (core.agent_x[0], core.agent_y[0])
    venv.close()


def test_max_episode_steps_truncates():
    venv = gym.make_vec(ENV_ID, num_envs=3, max_episode_steps=25, distribution_mode="easy")
    venv.reset(seed=5)
    for _ in range(24):
        _, _, terminated, truncated, _ = venv.step(np.full(3, NOOP))
        assert not (terminated | truncated).any()
    _, _, terminated, truncated, info = venv.step(np.full(3, NOOP))
    assert truncated.all() and info["timed_out"].all() and not terminated.any()
    assert not info["died"].any()
    _, reward, terminated, truncated, _ = venv.step(np.full(3, NOOP))
    assert not (terminated | truncated).any() and (reward == 0).all()
    venv.close()


def test_stock_levels_match_raw_procgen():
    """rand_fraction=1 edits nothing but the timeout: frames and rewards are procgen's."""
    rng = np.random.default_rng(1)
    venv = ProcgenMazeVectorEnv(num_envs=4, rand_fraction=1.0, distribution_mode="easy")
    raw = _raw(num=4, seed=42, distribution_mode="easy")
    obs, _ = venv.reset(seed=42)
    assert np.array_equal(obs, raw.observe()[1]["rgb"])
    live = np.ones(4, dtype=bool)  # envs still in their first episode
    prev, compared = obs, 0
    for _ in range(150):
        a = rng.choice([LEFT, DOWN, UP, RIGHT, NOOP], 4)
        obs, reward, terminated, truncated, _ = venv.step(a)
        raw.act(a.astype(np.int32))
        raw_rew, raw_obs, first = raw.observe()
        assert np.array_equal((terminated | truncated)[live], first[live])
        assert np.array_equal(reward[live], raw_rew[live])
        ended = live & first  # procgen shows the next level; the backend the last frame
        assert np.array_equal(obs[ended], prev[ended])
        live &= ~first
        assert np.array_equal(obs[live], raw_obs["rgb"][live])
        compared += int(live.sum())
        prev = raw_obs["rgb"]
    assert compared >= 300


def _planes_of(st: ps.MazeState) -> np.ndarray:
    """The symbolic planes of a procgen state, from the state alone (row 0 at the top)."""
    wd = st.world_dim
    planes = np.zeros((wd, wd, 3), dtype=np.uint8)
    image = st.grid.T[::-1]  # [x, y] -> [row, col], y up
    planes[..., 0] = np.where(image == ps.WALL, 255, 0)
    planes[..., 1] = np.where(image == ps.GOAL, 255, 0)
    ax, ay = int(st.agent["x"]), int(st.agent["y"])
    planes[wd - 1 - ay, ax, 2] = 255
    return planes


@pytest.mark.parametrize("mode", ["easy", "hard"])
def test_symbolic_planes_are_procgen_s_state(mode):
    world = {"easy": 15, "hard": 25}[mode]
    venv = ProcgenMazeVectorEnv(
        num_envs=6, obs_mode="symbolic", rand_fraction=0.5, corner_size=3, distribution_mode=mode
    )
    core = venv.unwrapped.core
    obs, info = venv.reset(seed=13)
    assert obs.shape == (6, world, world, 3) and venv.observation_space.contains(obs)
    for i in range(6):
        assert np.array_equal(obs[i], _planes_of(ps.parse_state(core._get_state(i))))
    # Random moves (bumps and no-ops included): every frame is procgen's state.
    rng = np.random.default_rng(5)
    plans = [rng.choice([LEFT, DOWN, UP, RIGHT, NOOP, 11], 12).tolist() for _ in range(6)]
    for _, obs, _, terminated, truncated, _, alive in _walk(venv, plans, check_agent=False):
        for i in np.flatnonzero(alive & ~(terminated | truncated)).tolist():
            assert np.array_equal(obs[i], _planes_of(ps.parse_state(core._get_state(i))))
    # Walking to the cheese: the final frame shows the agent on its cell and no cheese.
    _, info = venv.reset()
    plans = [
        bfs_actions(core.open_cells(i), (0, 0), (info["cheese_x"][i], info["cheese_y"][i]))
        for i in range(6)
    ]
    collected = np.zeros(6, dtype=bool)
    for _, obs, _, terminated, _, info, alive in _walk(venv, plans, check_agent=False):
        for i in np.flatnonzero(alive & terminated).tolist():
            m = (world - int(info["maze_dim"][i])) // 2
            x, y = m + int(info["cheese_x"][i]), m + int(info["cheese_y"][i])
            assert obs[i, world - 1 - y, x, 2] == 255 and obs[i, ..., 2].sum() == 255
            assert not obs[i, ..., 1].any()
            collected[i] = True
    assert collected.all()
    venv.close()


def test_agent_centred_view_is_the_whole_world_cut_around_the_agent():
    # The same levels and moves with view_size 0 and 2 * 15 - 1: each agent-centred frame
    # is the whole-world frame padded with wall and cut around the agent.
    kwargs = dict(num_envs=4, obs_mode="symbolic", distribution_mode="easy", corner_size=3)
    whole, ego = ProcgenMazeVectorEnv(**kwargs), ProcgenMazeVectorEnv(**kwargs, view_size=29)
    assert ego.single_observation_space.shape == (29, 29, 3)
    full, obs = whole.reset(seed=4)[0], ego.reset(seed=4)[0]
    rng = np.random.default_rng(0)
    for _ in range(30):
        padded = np.zeros((4, 43, 43, 3), dtype=np.uint8)
        padded[..., 0] = 255
        padded[:, 14:29, 14:29] = full
        for i in range(4):
            row, col = np.argwhere(full[i, ..., 2] == 255)[0]
            assert np.array_equal(obs[i], padded[i, row : row + 29, col : col + 29])
        actions = rng.integers(0, 15, 4)
        full, obs = whole.step(actions)[0], ego.step(actions)[0]
    whole.close()
    ego.close()


# --------------------------------------------------------------------------------------
# Determinism, Gymnasium contract, arguments
# --------------------------------------------------------------------------------------


def test_same_seed_same_levels_and_placements():
    def run(seed):
        venv = ProcgenMazeVectorEnv(num_envs=4, rand_fraction=0.5, corner_size=5)
        obs, info = venv.reset(seed=seed)
        rows = [(obs.copy(), {k: info[k].copy() for k in INFO_KEYS})]
        for _ in range(3):
            obs, info = venv.reset()
            rows.append((obs.copy(), {k: info[k].copy() for k in INFO_KEYS}))
        venv.close()
        return rows

    a, b, c = run(7), run(7), run(8)
    for (oa, ia), (ob, ib) in zip(a, b):
        assert np.array_equal(oa, ob)
        assert all(np.array_equal(ia[k], ib[k]) for k in INFO_KEYS)
    assert not np.array_equal(a[0][1]["level_seed"], c[0][1]["level_seed"])
    # A level seed gets the same maze and cheese in any env, slot and rand_seed.
    levels = [int(s) for s in a[1][1]["level_seed"][:2]]
    other = ProcgenMazeVectorEnv(num_envs=3, rand_fraction=0.5, corner_size=5)
    obs, info = other.reset(seed=99, options={"level_seeds": [5, levels[1], levels[0]]})
    assert info["level_seed"].tolist() == [5, levels[1], levels[0]]
    for j, i in ((1, 1), (2, 0)):
        assert np.array_equal(obs[j], a[1][0][i])
        assert (info["cheese_x"][j], info["cheese_y"][j]) == (
            a[1][1]["cheese_x"][i],
            a[1][1]["cheese_y"][i],
        )
    obs, info = other.reset()  # and later levels draw from the configured range again
    assert not set(info["level_seed"].tolist()) & {5, *levels}
    with pytest.raises(ValueError, match="level_seeds"):
        other.reset(options={"level_seeds": [1, 2]})
    other.close()


@pytest.mark.parametrize("obs_mode, shape", [("pixels", (64, 64, 3)), ("symbolic", (25, 25, 3))])
def test_gymnasium_checker_passes(obs_mode, shape):
    env = gym.make(
        ENV_ID, obs_mode=obs_mode, rand_fraction=0.5, corner_size=5, render_mode="rgb_array"
    )
    check_env(env.unwrapped)
    obs, info = env.reset(seed=1)
    assert obs.shape == shape and set(INFO_KEYS) <= set(info)
    assert env.render().shape == (512, 512, 3)
    env.close()


def test_single_env_episode_flow():
    env = ProcgenMazeEnv(distribution_mode="easy", corner_size=1)
    _, info = env.reset(seed=3)
    seed0 = info["level_seed"]
    plan = bfs_actions(env.core.open_cells(0), (0, 0), (info["cheese_x"], info["cheese_y"]))
    for j, a in enumerate(plan):
        _, reward, terminated, truncated, info = env.step(a)
        assert terminated == (j == len(plan) - 1) and not truncated
    assert reward == 10.0 and info["cheese_collected"] and info["reached_corner"]
    with pytest.raises(RuntimeError, match="reset"):
        env.step(NOOP)
    _, info = env.reset()
    assert info["level_seed"] != seed0 and not info["reached_corner"]
    env.close()


def test_make_vec_api():
    venv = gym.make_vec(ENV_ID, num_envs=4, rand_fraction=0.5)
    assert isinstance(venv.unwrapped, ProcgenMazeVectorEnv)
    assert venv.metadata["autoreset_mode"] == gym.vector.AutoresetMode.NEXT_STEP
    obs, info = venv.reset(seed=0)
    assert obs.shape == (4, 64, 64, 3) and obs.dtype == np.uint8
    for key in INFO_KEYS:
        assert info[key].shape == (4,) and info["_" + key].all()
    _, reward, terminated, truncated, _ = venv.step(venv.action_space.sample())
    assert reward.dtype == np.float32 and terminated.dtype == bool and truncated.dtype == bool
    venv.close()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(obs_mode="rgb"), "obs_mode"),
        (dict(device="cuda"), "device"),
        (dict(rand_fraction=1.5), "rand_fraction"),
        (dict(corner_size=0), "corner_size"),
        (dict(corner_terminates="yes"), "corner_terminates"),
        (dict(distribution_mode="memory"), "distribution_mode"),
        (dict(num_levels=-1), "num_levels"),
        (dict(max_episode_steps=0), "max_episode_steps"),
        (dict(render_mode="human"), "render_mode"),
        (dict(num_envs=0), "num_envs"),
    ],
)
def test_invalid_arguments(kwargs, match):
    kwargs.setdefault("num_envs", 2)
    with pytest.raises(ValueError, match=match):
        ProcgenMazeVectorEnv(**kwargs)


def test_invalid_seeds_and_actions():
    venv = ProcgenMazeVectorEnv(num_envs=2)
    with pytest.raises(ValueError, match="single rand_seed"):
        venv.reset(seed=[1, 2])
    with pytest.raises(RuntimeError, match="reset"):
        venv.step(np.zeros(2, dtype=int))
    venv.reset(seed=1)
    for bad in (np.zeros(3, dtype=int), np.zeros(2), np.array([0, 15])):
        with pytest.raises(ValueError, match="invalid|out of range"):
            venv.step(bad)
    venv.close()


def test_import_does_not_load_procgen_and_missing_procgen_is_named(monkeypatch):
    code = (
        "import sys, gymnasium, coinrun_mg\n"
        "spec = gymnasium.spec('coinrun_mg/ProcgenMaze-v0')\n"
        "assert spec.vector_entry_point.endswith(':ProcgenMazeVectorEnv')\n"
        "import coinrun_mg.envs.maze.procgen_env\n"
        "assert 'procgen' not in sys.modules and 'gym' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    monkeypatch.setitem(sys.modules, "procgen", None)  # makes `import procgen` fail
    with pytest.raises(ImportError, match=r"coinrun-mg\[procgen\]") as err:
        gym.make(ENV_ID)
    assert INSTALL_COMMAND in str(err.value)
