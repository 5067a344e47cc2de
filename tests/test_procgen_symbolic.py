"""Symbolic observations of the procgen backend (``ProcgenCoinRun-v0``, ``obs_mode="symbolic"``).

The backend converts procgen's state into a native state (``procgen_native.py``) and
draws the native observation from it.  Hand-picked situations are played from the same
state in both backends, procgen's physics against the native physics, and compared
plane by plane.  What differs, and why:

* solid, lava, saw, crate, coin: nothing (the level's cells and static entities).
* vx, vy, x_frac, y_frac: nothing: the native physics follows procgen's to the float32
  rounding of the agent's position and velocity, which never moves a byte here.
* enemy: equal until an enemy turns, but for a step where a walker's centre sits on a
  tile edge (procgen sums its moves in sub-steps, the native walk in one: float32
  rounding may put the centre on either side).  The native walkers turn at full speed;
  procgen's lose a quarter of their speed at every turn (0.15, then 0.1125, ...), so
  after a turn the two drift apart and the enemy plane may differ.  Both are the native
  physics' differences, not the observation's: the view shows procgen's enemies where
  procgen has them.
* A terminal step: the backend returns the observation of the step before (procgen has
  already reset), as it does with pixels.
"""

from __future__ import annotations

import contextlib
import io

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import coinrun_mg  # noqa: F401  (registers the environments)
from coinrun_mg.envs.coinrun import procgen_native as pn
from coinrun_mg.envs.coinrun import procgen_state as ps
from coinrun_mg.envs.coinrun.config import CoinRunConfig
from coinrun_mg.envs.coinrun.observation import SYMBOLIC_CHANNEL_NAMES, symbolic_obs
from coinrun_mg.envs.coinrun.physics import physics_step
from coinrun_mg.envs.coinrun.procgen_env import ProcgenCoinRunEnv, ProcgenCoinRunVectorEnv
from coinrun_mg.envs.coinrun.state import (
    AGENT_RX,
    AGENT_RY,
    CRATE,
    EMPTY,
    LAVA,
    LAVA_TOP,
    NUM_SOLID,
    SAW,
)

with contextlib.redirect_stderr(io.StringIO()):  # procgen's old gym prints a banner
    procgen = pytest.importorskip("procgen")

pytestmark = pytest.mark.procgen

VIEW = 13
C = VIEW // 2  # the agent's cell in the view
NOOP, UP, RIGHT, RIGHT_JUMP = 4, 5, 7, 8
PLANE = {name: i for i, name in enumerate(SYMBOLIC_CHANNEL_NAMES)}


@pytest.fixture(scope="module")
def levels() -> list[ps.CoinRunState]:
    """48 fresh hard-mode levels (a timeout of 1 makes every step a new level)."""
    env = procgen.ProcgenGym3Env(num=16, env_name="coinrun", rand_seed=11, distribution_mode="hard")
    short = []
    for s in env.callmethod("get_state"):
        st = ps.CoinRunState.parse(s)
        st.game["timeout"] = 1
        short.append(st.serialize())
    env.callmethod("set_state", short)
    out = list(env.callmethod("get_state"))
    while len(out) < 48:
        env.act(np.zeros(16, dtype=np.int32))
        out.extend(env.callmethod("get_state"))
    return [ps.CoinRunState.parse(s) for s in out[:48]]


# --------------------------------------------------------------------------------------
# Conventions
# --------------------------------------------------------------------------------------


def test_conversion_follows_procgen_conventions(levels):
    for st in levels[:12]:
        level = pn.native_level(st)
        cells = st.grid
        # Solid exactly where procgen has a wall cell, empty where it has nothing.
        assert np.array_equal(level.grid < NUM_SOLID, np.isin(cells, ps.SOLID_CELLS))
        lava = np.isin(cells, (ps.LAVA, ps.LAVA_TOP))
        assert np.array_equal(np.isin(level.grid, (LAVA, LAVA_TOP)), lava)
        assert (cells[level.coin_x, level.coin_y], level.grid[level.coin_x, level.coin_y]) == (
            ps.COIN,
            EMPTY,
        )
        e = st.entities
        for kind, tile in ((ps.SAW, SAW), (ps.CRATE, CRATE)):
            pick = e["type"] == kind
            assert (e["rx"][pick] == 0.5).all() and (e["x"][pick] % 1 == 0.5).all()
            assert (level.grid[e["x"][pick].astype(int), e["y"][pick].astype(int)] == tile).all()
            # Every such cell holds one (procgen sometimes stacks two crates in one cell).
            assert (level.grid == tile).sum() == len(set(zip(e["x"][pick], e["y"][pick])))
        # The player's box and start are the native ones (centre, y up, tiles).
        p = st.player
        assert (p["rx"], p["ry"]) == (np.float32(AGENT_RX), np.float32(AGENT_RY))
        assert p["x"] == 1.5 and p["y"] == np.float32(1) + np.float32(AGENT_RY)
        assert level.grid[1, 0] < NUM_SOLID and level.grid[1, 1] == EMPTY  # floor, open above
    # The per-step fast path reads the same entity records as a full parse.
    env = procgen.ProcgenGym3Env(num=2, env_name="coinrun", rand_seed=5)
    for _ in range(30):
        env.act(np.full(2, RIGHT_JUMP, dtype=np.int32))
    for s in env.callmethod("get_state"):
        assert np.array_equal(ps.entity_records(s), ps.CoinRunState.parse(s).entities)
        with pytest.raises(ValueError, match="entity records"):
            ps.entity_records(s[: len(s) // 8])
    with pytest.raises(ValueError, match="coin cells"):
        st = ps.CoinRunState.parse(levels[0].serialize())  # a copy
        st.grid[st.grid == ps.COIN] = ps.EMPTY
        pn.native_level(st)


# --------------------------------------------------------------------------------------
# Hand-picked situations, played in both backends
# --------------------------------------------------------------------------------------


def _find(levels, want):
    """The first level and cell ``want(st, level)`` finds (it returns a cell or None)."""
    for st in levels:
        cell = want(st, pn.native_level(st))
        if cell is not None:
            return st.level_seed, cell
    raise AssertionError("no level among the fixtures has this situation")


def _beside_saw(st, level):
    """A cell left of a saw, open and on solid ground: the agent stands next to the saw."""
    g = level.grid
    for x, y in np.argwhere(g == SAW).tolist():
        if x > 6 and g[x - 1, y] == EMPTY and g[x - 1, y + 1] == EMPTY and g[x - 1, y - 1] < 2:
            return x - 1, y
    return None


def _above_lava(st, level):
    """A cell two above a lava pit's surface, open below: the agent falls into the pit."""
    g = level.grid
    for x, y in np.argwhere(g == LAVA_TOP).tolist():
        if y + 3 < g.shape[1] and (g[x, y + 1 : y + 4] == EMPTY).all():
            return x, y + 2
    return None


def _on_crate(st, level):
    """A crate with two open cells above it: the agent stands on it."""
    g = level.grid
    for x, y in np.argwhere(g == CRATE).tolist():
        if (g[x, y + 1], g[x, y + 2]) == (EMPTY, EMPTY):
            return x, y + 1
    return None


def _near_enemy(st, level):
    """A standing cell 3 or 4 columns from a walking enemy and above its row."""
    d = pn.native_dynamics(st.entities)
    standing = ps.read_layout(st).standing
    for ex, ey in zip(np.floor(d.enemy_x).astype(int), np.floor(d.enemy_y).astype(int)):
        for x, y in standing.tolist():
            if 3 <= abs(x - ex) <= 4 and 1 <= y - ey <= 4:
                return x, y
    return None


def _play(level_seed, cell, actions):
    """Play ``actions`` from the agent standing at rest in ``cell`` (None: where procgen
    starts it), in the backend and natively; yields per step the backend's step, the
    native state, view and events, and the procgen state."""
    venv = ProcgenCoinRunVectorEnv(num_envs=1, obs_mode="symbolic", view_size=VIEW)
    venv.reset(seed=0)
    venv.reset(options={"level_seeds": [level_seed]})
    env = venv.core.env
    st = ps.CoinRunState.parse(env.callmethod("get_state")[0])
    assert st.level_seed == level_seed
    if cell is not None:
        st.player["x"], st.player["y"] = cell[0] + 0.5, cell[1] + AGENT_RY
        st.player["vx"] = st.player["vy"] = 0.0
        st.tail["last_agent_y"] = st.player["y"]  # procgen's crates judge falls by it
        env.callmethod("set_state", [st.serialize()])
    native = pn.native_state([st])
    config = CoinRunConfig()
    try:
        for a in actions:
            step = venv.step(np.array([a]))
            events = physics_step(native, torch.tensor([a]), config)
            now = ps.CoinRunState.parse(env.callmethod("get_state")[0])
            yield step, native, symbolic_obs(native, VIEW)[0].numpy(), events, now
    finally:
        venv.close()


def _differing(got: np.ndarray, want: np.ndarray) -> set[str]:
    return {name for name, c in PLANE.items() if not np.array_equal(got[..., c], want[..., c])}


def _same_views(level_seed, cell, actions) -> list[np.ndarray]:
    """Play ``actions`` in both backends; every view before the episode ends must agree
    plane by plane.  Returns the backend's views (the last one that of the ending step)."""
    views = []
    for (obs, _, terminated, truncated, info), _, want, events, _ in _play(
        level_seed, cell, actions
    ):
        views.append(obs[0])
        assert bool(terminated[0]) == bool(events.terminated[0])
        if terminated[0] or truncated[0]:
            assert bool(info["died"][0]) == bool(events.died[0])
            assert np.array_equal(obs[0], views[-2])  # the step before's, as with pixels
            break
        assert _differing(obs[0], want) == set()
    return views


def test_next_to_a_saw(levels):
    views = _same_views(*_find(levels, _beside_saw), [NOOP, NOOP, RIGHT, RIGHT, RIGHT, RIGHT])
    standing = views[1]
    assert standing[C, C + 1, PLANE["saw"]] == 255 and standing[C + 1, C, PLANE["solid"]] == 255
    assert standing[..., PLANE["saw"]].sum() >= 255
    assert standing[0, 0, PLANE["vy"]] == 128 and standing[0, 0, PLANE["vx"]] == 128  # at rest
    assert len(views) < 6  # walking into the saw ends the episode (both backends: died)


def test_falling_into_lava(levels):
    # procgen's pits sit a step below the ground left of them: the agent drops in from rest.
    views = _same_views(*_find(levels, _above_lava), [NOOP] * 12)
    first = views[0]
    assert first[C + 2, C, PLANE["lava"]] == 255 and first[C + 1, C, PLANE["lava"]] == 0
    assert first[C + 2, C, PLANE["solid"]] == 0
    assert views[1][0, 0, PLANE["vy"]] < first[0, 0, PLANE["vy"]] < 128  # falling faster
    assert len(views) < 12  # the lava ends the episode (both backends: died)


def test_on_a_crate(levels):
    seed, cell = _find(levels, _on_crate)
    views = _same_views(seed, cell, [NOOP, NOOP, UP, UP, NOOP, NOOP, NOOP, NOOP])
    on_crate = views[1]
    assert on_crate[C + 1, C, PLANE["crate"]] == 255 and on_crate[C + 1, C, PLANE["solid"]] == 0
    assert on_crate[0, 0, PLANE["vy"]] == 128  # landed: resting on the crate
    assert views[2][0, 0, PLANE["vy"]] > 128  # jumped off it


def test_mid_jump(levels):
    views = _same_views(levels[0].level_seed, None, [RIGHT_JUMP] * 4 + [RIGHT] * 14)
    vy = np.array([v[0, 0, PLANE["vy"]] for v in views])
    frac = {v[0, 0, PLANE["y_frac"]] for v in views}
    assert (vy[:3] > 128).all() and (vy < 128).any() and len(frac) > 5  # up, then down
    assert len({v[0, 0, PLANE["vx"]] for v in views}) > 3


def test_enemy_in_view(levels):
    seed, cell = _find(levels, _near_enemy)
    turned, seen, alike = False, 0, 0
    for (obs, _, terminated, truncated, _), native, want, _, now in _play(seed, cell, [NOOP] * 30):
        if terminated[0] or truncated[0]:
            break
        procgen_view = obs[0]
        moving = pn.native_dynamics(now.entities)
        ax, ay = int(np.floor(moving.agent[0])), int(np.floor(moving.agent[1]))
        # The enemy plane marks the cell of each procgen enemy's centre within view.
        expected = np.zeros((VIEW, VIEW), dtype=np.uint8)
        for ex, ey in zip(np.floor(moving.enemy_x).astype(int), np.floor(moving.enemy_y)):
            dx, dy = ex - ax, int(ey) - ay
            if abs(dx) <= C and abs(dy) <= C:
                expected[C - dy, C + dx] = 255
        assert np.array_equal(procgen_view[..., PLANE["enemy"]], expected)
        seen += expected.any()
        # procgen's walkers slow down by a quarter at every turn, the native ones do not.
        turned |= bool((np.abs(moving.enemy_vx) < 0.15 - 1e-6).any())
        differing = _differing(procgen_view, want)
        assert differing <= {"enemy"}
        if not turned:
            # Until then both walk alike, to float32 rounding (procgen sums sub-steps): a
            # centre right on a tile edge may land on either side of it.
            native_x = native.enemy_x[0, : len(moving.enemy_x)].numpy()
            assert np.abs(native_x - moving.enemy_x).max() < 1e-3
            on_edge = np.abs(moving.enemy_x - np.round(moving.enemy_x)).min() < 1e-3
            assert not differing or on_edge
            alike += not differing
    assert seen >= 10 and alike >= 10


# --------------------------------------------------------------------------------------
# The backend's views during play, and its interface
# --------------------------------------------------------------------------------------


def test_views_are_the_native_views_of_procgen_s_states():
    """Through autoresets, moved coins and timeouts, every step's view is the native view
    of procgen's state as parsed in full (the backend reads entities on a fast path and
    converts levels once per episode)."""
    n = 3
    venv = ProcgenCoinRunVectorEnv(
        num_envs=n, obs_mode="symbolic", rand_fraction=0.5, max_episode_steps=25
    )
    obs, info = venv.reset(seed=4)
    rng = np.random.default_rng(0)
    starts = 0
    for _ in range(70):
        before = obs
        obs, _, terminated, truncated, info = venv.step(
            np.where(rng.random(n) < 0.7, RIGHT_JUMP, rng.integers(0, 15, n))
        )
        assert venv.observation_space.contains(obs)
        states = [ps.CoinRunState.parse(s) for s in venv.core.env.callmethod("get_state")]
        for i in range(n):
            if terminated[i] or truncated[i]:
                assert np.array_equal(obs[i], before[i])
                continue
            assert info["coin_x"][i] == pn.native_level(states[i]).coin_x
            want = symbolic_obs(pn.native_state([states[i]]), VIEW)[0].numpy()
            assert np.array_equal(obs[i], want)
        starts += int(venv.core.steps.min() == 0)
    assert starts > 0 and venv.core.moved.any()
    venv.close()


def test_gymnasium_checker_and_spaces():
    env = gym.make("coinrun_mg/ProcgenCoinRun-v0", obs_mode="symbolic", view_size=9)
    check_env(env.unwrapped)
    obs, _ = env.reset(seed=1)
    assert obs.shape == (9, 9, len(SYMBOLIC_CHANNEL_NAMES)) and obs.dtype == np.uint8
    env.close()
    single = ProcgenCoinRunEnv(obs_mode="symbolic")
    assert single.observation_space.shape == (13, 13, 10)
    # The vector env's spaces are the native vector env's: a policy runs on either.
    procgen_vec = gym.make_vec("coinrun_mg/ProcgenCoinRun-v0", num_envs=2, obs_mode="symbolic")
    native_vec = gym.make_vec("coinrun_mg/CoinRun-v0", num_envs=2, obs_mode="symbolic")
    assert procgen_vec.single_observation_space == native_vec.single_observation_space
    assert procgen_vec.observation_space == native_vec.observation_space
    assert procgen_vec.single_action_space == native_vec.single_action_space
    procgen_vec.close()
    native_vec.close()
