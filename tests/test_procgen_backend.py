"""The stock-procgen backend: state codec, coin moving, end tracking, Gymnasium contract."""

from __future__ import annotations

import contextlib
import io
import struct
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import coinrun_mg  # noqa: F401  (registers the environments)
from coinrun_mg.envs.coinrun import procgen_state as ps
from coinrun_mg.envs.coinrun.core import INFO_KEYS
from coinrun_mg.envs.coinrun.procgen_env import (
    INSTALL_COMMAND,
    ProcgenCoinRunEnv,
    ProcgenCoinRunVectorEnv,
    coin_moved,
)

with contextlib.redirect_stderr(io.StringIO()):  # procgen's old gym prints a banner
    procgen = pytest.importorskip("procgen")

pytestmark = pytest.mark.procgen

ENV_ID = "coinrun_mg/ProcgenCoinRun-v0"
RIGHT_JUMP = 8


def _raw(num=1, seed=0, **kwargs):
    return procgen.ProcgenGym3Env(num=num, env_name="coinrun", rand_seed=seed, **kwargs)


def _fresh_states(num_levels: int, mode: str, seed: int = 0) -> list[bytes]:
    """States of ``num_levels`` fresh levels: a timeout of 1 makes every step a new level."""
    env = _raw(num=16, seed=seed, distribution_mode=mode)
    short = []
    for s in env.callmethod("get_state"):
        st = ps.CoinRunState.parse(s)
        st.game["timeout"] = 1
        short.append(st.serialize())
    env.callmethod("set_state", short)
    out = list(env.callmethod("get_state"))
    while len(out) < num_levels:
        env.act(np.zeros(16, dtype=np.int32))
        out.extend(env.callmethod("get_state"))
    return out[:num_levels]


# --------------------------------------------------------------------------------------
# Codec
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["easy", "hard"])
def test_codec_round_trips_fresh_and_running_states(mode):
    states = _fresh_states(96, mode, seed=5)
    env = _raw(num=4, seed=9, distribution_mode=mode)
    rng = np.random.default_rng(0)
    for _ in range(40):  # mid-episode states: moving enemies, velocities, crates
        env.act(rng.integers(0, 15, 4).astype(np.int32))
    states += env.callmethod("get_state")
    for s in states:
        st = ps.parse_state(s)
        assert st.serialize() == s
        assert st.game_name == "coinrun" and st.grid.shape == (64, 64)
        assert st.player["type"] == ps.PLAYER
        assert int(st.options["distribution_mode"]) == (mode == "hard")
        assert ps.player_position(s) == (st.player["x"], st.player["y"])
        assert (st.grid == ps.COIN).sum() == 1
    # Through procgen: set the re-serialized states and read them back unchanged.
    running = env.callmethod("get_state")
    env.callmethod("set_state", [ps.parse_state(s).serialize() for s in running])
    assert env.callmethod("get_state") == running


def test_codec_fields_match_procgen():
    env = _raw(num=2, seed=3, num_levels=50, start_level=1000)
    for _ in range(7):
        env.act(np.full(2, 4, dtype=np.int32))
    infos = env.get_info()
    for s, info in zip(env.callmethod("get_state"), infos):
        st = ps.parse_state(s)
        assert st.level_seed == info["level_seed"]
        assert 1000 <= st.level_seed < 1050
        assert (int(st.options["level_seed_low"]), int(st.options["level_seed_high"])) == (
            1000,
            1050,
        )
        assert int(st.game["cur_time"]) == 7 and int(st.game["timeout"]) == 1000
        assert st.tail["gravity"] == np.float32(0.2)
        assert st.tail["air_control"] == np.float32(0.15)


def _corruptions(s: bytes) -> dict[str, bytes]:
    st = ps.parse_state(s)
    rng_len_at = 4 + 4 + 7 + 17 * 4 + 4
    count_at = ps.player_offset(s) - 4
    grid_w_at = len(s) - 32 - 4 * 4096 - 12
    flip = lambda at, v: s[:at] + struct.pack("<i", v) + s[at + 4 :]  # noqa: E731
    return {
        "empty": b"",
        "truncated": s[:-1],
        "cut in the header": s[:200],
        "wrong marker": s[:-4] + struct.pack("<I", 0xDEADBEEF),
        "extra bytes": s + b"\0\0\0\0",
        "entity count + 1": flip(count_at, len(st.entities) + 1),
        "entity count - 1": flip(count_at, len(st.entities) - 1),
        "rng length + 4": flip(rng_len_at, struct.unpack_from("<i", s, rng_len_at)[0] + 4),
        "grid width 32": flip(grid_w_at, 32),
        "version 1": flip(0, 1),
    }


def test_codec_refuses_corrupted_and_foreign_states():
    s = _raw(num=1, seed=4).callmethod("get_state")[0]
    for name, bad in _corruptions(s).items():
        with pytest.raises(ValueError, match="not a procgen coinrun state"):
            ps.parse_state(bad)
        assert name  # (names the case in a failure's traceback)
    for game in ("bigfish", "climber", "ninja"):
        foreign = procgen.ProcgenGym3Env(num=1, env_name=game, rand_seed=0)
        with pytest.raises(ValueError, match=f"procgen game '{game}'"):
            ps.parse_state(foreign.callmethod("get_state")[0])


# --------------------------------------------------------------------------------------
# Level layout and coin placement
# --------------------------------------------------------------------------------------


def _ground_height(grid: np.ndarray, x: int) -> int:
    solid = np.isin(grid[x], ps.SOLID_CELLS)
    return int(np.argmin(solid)) if not solid.all() else grid.shape[1]


def _is_section_left_edge(grid: np.ndarray, x: int, y: int) -> bool:
    """Independent check from the grid: (x, y) stands on the ground at a section's left edge."""
    if not (grid[x, y] in (ps.EMPTY, ps.COIN) and grid[x, y - 1] in ps.SOLID_CELLS):
        return False
    if _ground_height(grid, x) != y:
        return False
    if x == ps.FIRST_SECTION_X:
        return True
    step_up = grid[x - 1, y] == ps.BARRIER and _ground_height(grid, x - 1) < y
    h_left = _ground_height(grid, x - 1)
    step_down = h_left > y and grid[x, h_left] == ps.BARRIER
    return bool(step_up or step_down)


@pytest.mark.parametrize("mode", ["easy", "hard"])
def test_layout_sections_and_standing_cells(mode):
    for s in _fresh_states(160, mode, seed=21):
        st = ps.parse_state(s)
        lay = ps.read_layout(st)
        grid = st.grid
        assert grid[lay.end_x, lay.end_y] == ps.COIN
        assert (grid[lay.end_x + 1 :] == ps.WALL).all()  # solid wall beyond the end
        xs = lay.sections[:, 0]
        assert 1 <= len(xs) <= 5 and xs[0] == ps.FIRST_SECTION_X
        assert (np.diff(xs) > 0).all() and xs[-1] < lay.end_x
        # One barrier per section edge (the last edge's barrier became the coin).
        assert (grid == ps.BARRIER).sum() == len(xs)
        for x, y in lay.sections:
            assert _is_section_left_edge(grid, x, y)
        for x, y in lay.standing:
            assert ps.FIRST_SECTION_X <= x < lay.end_x
            assert grid[x, y] == ps.EMPTY and grid[x, y - 1] in ps.SOLID_CELLS
        occupied = {(int(e["x"]), int(e["y"])) for e in st.entities[1:] if e["type"] != ps.PLAYER}
        assert not occupied & {tuple(c) for c in lay.standing.tolist()}


def test_fraction_decision_statistics():
    seeds = np.arange(123_456, 123_456 + 2000)
    for fraction in (0.02, 0.3):
        moved = coin_moved(seeds, fraction)
        sd = np.sqrt(len(seeds) * fraction * (1 - fraction))
        assert abs(moved.sum() - fraction * len(seeds)) < 4 * sd
    assert not coin_moved(seeds, 0.0).any() and coin_moved(seeds, 1.0).all()
    # Deterministic, and nested: a level moved at 2% is moved at 30% too.
    assert (coin_moved(seeds, 0.3) == coin_moved(seeds, 0.3)).all()
    assert not (coin_moved(seeds, 0.02) & ~coin_moved(seeds, 0.3)).any()


def _level_starts(venv, batches: int):
    """Yield (env index, info, state) for the first state of every new level.

    With ``max_episode_steps=1`` every step ends every episode, so every other step
    starts a new level in every environment.
    """
    core = venv.unwrapped.core
    obs, info = venv.reset(seed=17)
    n = venv.unwrapped.num_envs
    for _ in range(batches):
        for i in range(n):
            yield i, {k: info[k][i] for k in INFO_KEYS}, ps.parse_state(core._get_state(i))
        venv.step(np.full(n, 4))
        obs, _, _, _, info = venv.step(np.full(n, 4))


def test_moved_coins_sit_on_section_edges():
    venv = gym.make_vec(ENV_ID, num_envs=16, rand_fraction=1.0, max_episode_steps=1)
    core = venv.unwrapped.core
    count = 0
    for i, info, st in _level_starts(venv, 12):
        grid = st.grid
        x, y = int(info["coin_x"]), int(core.coin_y[i])
        assert info["coin_randomized"] and x < info["end_x"]
        assert grid[x, y] == ps.COIN and (grid == ps.COIN).sum() == 1
        assert grid[info["end_x"], core.end_y[i]] == ps.EMPTY
        assert _is_section_left_edge(grid, x, y)
        assert int(st.game["timeout"]) == 1
        count += 1
    assert count == 16 * 12
    venv.close()


def test_fraction_in_the_env_follows_the_level_seed():
    venv = gym.make_vec(ENV_ID, num_envs=16, rand_fraction=0.3, max_episode_steps=1)
    seeds, moved = [], []
    for _, info, st in _level_starts(venv, 8):
        assert info["level_seed"] == st.level_seed
        seeds.append(info["level_seed"])
        moved.append(info["coin_randomized"])
        assert (info["coin_x"] != info["end_x"]) == info["coin_randomized"]
    assert (np.array(moved) == coin_moved(seeds, 0.3)).all()
    assert 0 < sum(moved) < len(moved)
    venv.close()


def test_anywhere_placement_and_region():
    venv = gym.make_vec(
        ENV_ID,
        num_envs=16,
        rand_fraction=1.0,
        coin_placement="anywhere",
        coin_region=(0.5, 1.0),
        max_episode_steps=1,
    )
    core = venv.unwrapped.core
    for i, info, st in _level_starts(venv, 4):
        x, y, end_x = int(info["coin_x"]), int(core.coin_y[i]), int(info["end_x"])
        assert st.grid[x, y] == ps.COIN
        st.grid[x, y] = ps.EMPTY  # put the coin back to read the level as generated
        st.grid[end_x, core.end_y[i]] = ps.COIN
        standing = {tuple(c) for c in ps.read_layout(st).standing.tolist()}
        assert (x, y) in standing
        assert x >= 0.5 * end_x or not any(c[0] >= 0.5 * end_x for c in standing)
    venv.close()


# --------------------------------------------------------------------------------------
# Equivalence with raw procgen
# --------------------------------------------------------------------------------------


def test_fraction_zero_matches_raw_procgen():
    """Same seed, same actions: same frames and rewards (NEXT_STEP ignores one action)."""
    rng = np.random.default_rng(1)
    actions = np.where(rng.random(700) < 0.6, RIGHT_JUMP, rng.integers(0, 15, 700))
    venv = ProcgenCoinRunVectorEnv(num_envs=1, distribution_mode="hard")
    raw = _raw(num=1, seed=42, distribution_mode="hard")
    obs, info = venv.reset(seed=42)
    _, raw_obs, _ = raw.observe()
    assert np.array_equal(obs, raw_obs["rgb"])
    assert info["level_seed"][0] == raw.get_info()[0]["level_seed"]
    episodes, restarting = 0, False
    prev_raw = cur_raw = raw_obs["rgb"]
    for a in actions:
        obs, reward, terminated, truncated, info = venv.step(np.array([a]))
        if restarting:  # the action was ignored: procgen's next level, not yet stepped
            assert reward[0] == 0 and not (terminated[0] or truncated[0])
            assert np.array_equal(obs, cur_raw)
            restarting = False
            continue
        raw.act(np.array([a], dtype=np.int32))
        raw_rew, raw_obs, first = raw.observe()
        assert reward[0] == raw_rew[0]
        if first[0]:  # procgen reset: the backend returns the episode's last frame
            assert terminated[0] or truncated[0]
            assert np.array_equal(obs, prev_raw)
            assert info["coin_collected"][0] == (raw_rew[0] > 0)
            restarting, episodes = True, episodes + 1
        else:
            assert not (terminated[0] or truncated[0])
            assert np.array_equal(obs, raw_obs["rgb"])
        prev_raw = cur_raw = raw_obs["rgb"]
    assert episodes >= 3


def test_fraction_zero_matches_raw_procgen_batched():
    venv = ProcgenCoinRunVectorEnv(num_envs=6, distribution_mode="easy", num_levels=20)
    raw = _raw(num=6, seed=8, distribution_mode="easy", num_levels=20)
    obs, _ = venv.reset(seed=8)
    assert np.array_equal(obs, raw.observe()[1]["rgb"])
    rng = np.random.default_rng(2)
    for _ in range(30):
        a = rng.integers(0, 15, 6)
        obs, reward, terminated, truncated, _ = venv.step(a)
        raw.act(a.astype(np.int32))
        raw_rew, raw_obs, first = raw.observe()
        if first.any():
            break
        assert np.array_equal(obs, raw_obs["rgb"]) and np.array_equal(reward, raw_rew)


# --------------------------------------------------------------------------------------
# Episodes: coin, end, timeout
# --------------------------------------------------------------------------------------


def test_touching_a_moved_coin_pays_and_ends():
    # coin_region (0, 0.01) has no candidate: the nearest one is the first section, x = 5.
    venv = ProcgenCoinRunVectorEnv(
        num_envs=8, rand_fraction=1.0, coin_region=(0.0, 0.01), distribution_mode="easy"
    )
    obs, info = venv.reset(seed=3)
    assert (info["coin_x"] == ps.FIRST_SECTION_X).all() and info["coin_randomized"].all()
    collected = np.zeros(8, dtype=bool)
    for _ in range(60):
        obs, reward, terminated, truncated, info = venv.step(np.full(8, RIGHT_JUMP))
        got = info["coin_collected"] & ~collected
        assert (reward[got] == 10).all() and terminated[got].all()
        assert not info["reached_end"][got].any()
        assert (reward[~got] == 0).all()
        collected |= got
        if collected.all():
            break
    assert collected.sum() >= 6


@pytest.mark.parametrize("end_terminates", [True, False])
def test_reached_end_lazy_tracking_matches_every_step(end_terminates):
    kwargs = dict(rand_fraction=1.0, end_terminates=end_terminates, distribution_mode="easy")
    lazy = ProcgenCoinRunVectorEnv(num_envs=8, **kwargs)
    full = ProcgenCoinRunVectorEnv(num_envs=8, track_agent=True, **kwargs)
    lazy.reset(seed=11)
    full.reset(seed=11)
    rng = np.random.default_rng(3)
    reached, sticky_seen = 0, False
    was_reached = np.zeros(8, dtype=bool)
    for _ in range(250):
        a = np.where(rng.random(8) < 0.85, RIGHT_JUMP, rng.integers(0, 15, 8))
        o1, r1, te1, tr1, i1 = lazy.step(a)
        o2, r2, te2, tr2, i2 = full.step(a)
        assert np.array_equal(o1, o2) and np.array_equal(r1, r2)
        assert np.array_equal(te1, te2) and np.array_equal(tr1, tr2)
        assert np.array_equal(i1["reached_end"], i2["reached_end"])
        # Read every step, except on the step procgen itself ended (it already reset).
        assert not np.isnan(i2["agent_x"][~(te2 | tr2)]).any()
        known = ~np.isnan(i1["agent_x"])
        assert np.array_equal(i1["agent_x"][known], i2["agent_x"][known])
        new = i1["reached_end"] & ~was_reached
        reached += int(new.sum())
        if end_terminates:
            assert te1[new].all() and (r1[new] == 0).all() and not i1["died"][new].any()
        else:
            assert not te1[new & ~i1["coin_collected"] & ~i1["died"]].any()
            sticky_seen |= bool((was_reached & i1["reached_end"]).any())
        was_reached = i1["reached_end"] & ~(te1 | tr1)
    assert reached >= 2
    if not end_terminates:
        assert sticky_seen


def test_end_terminates_starts_a_new_level():
    venv = ProcgenCoinRunVectorEnv(
        num_envs=8, rand_fraction=1.0, end_terminates=True, distribution_mode="easy"
    )
    obs, info = venv.reset(seed=11)
    rng = np.random.default_rng(3)
    for _ in range(250):
        seeds = info["level_seed"].copy()
        a = np.where(rng.random(8) < 0.85, RIGHT_JUMP, rng.integers(0, 15, 8))
        obs, reward, terminated, truncated, info = venv.step(a)
        ended_at_end = terminated & info["reached_end"]
        if ended_at_end.any():
            i = int(np.flatnonzero(ended_at_end)[0])
            obs, reward, terminated, truncated, info = venv.step(np.full(8, 4))
            assert info["level_seed"][i] != seeds[i] and not info["reached_end"][i]
            assert reward[i] == 0 and not terminated[i]
            assert info["agent_x"][i] == 1.5
            return
    pytest.fail("no episode reached the end")


def test_max_episode_steps_truncates():
    venv = gym.make_vec(ENV_ID, num_envs=3, max_episode_steps=25)
    venv.reset(seed=5)
    for _ in range(24):
        obs, reward, terminated, truncated, info = venv.step(np.full(3, 4))  # stand still
        assert not (terminated | truncated).any()
    obs, reward, terminated, truncated, info = venv.step(np.full(3, 4))
    assert truncated.all() and info["timed_out"].all() and not terminated.any()
    obs, reward, terminated, truncated, info = venv.step(np.full(3, 4))
    assert not (terminated | truncated).any() and (reward == 0).all()


def test_reset_with_level_seeds_plays_those_levels_once():
    # rand_fraction=1 and the largest seed: the coin is moved as for any level, and the
    # one-seed range still works at the top of procgen's seed range.
    kwargs = dict(rand_fraction=1.0, num_levels=3, start_level=100)
    venv = ProcgenCoinRunVectorEnv(num_envs=3, **kwargs)
    venv.reset(seed=0)
    venv.step(np.full(3, RIGHT_JUMP))  # mid-episode: the levels are replaced all the same
    levels = [123456, 7, 2**31 - 1]
    obs, info = venv.reset(options={"level_seeds": levels})
    assert info["level_seed"].tolist() == levels
    assert info["agent_x"].tolist() == [1.5] * 3 and not info["reached_end"].any()
    # The same level elsewhere (another slot, num_envs and rand_seed) looks the same.
    other = ProcgenCoinRunVectorEnv(num_envs=2, **kwargs)
    obs2, info2 = other.reset(seed=9, options={"level_seeds": [5, 123456]})
    assert info2["level_seed"].tolist() == [5, 123456]
    assert np.array_equal(obs2[1], obs[0]) and info2["coin_x"][1] == info["coin_x"][0]
    a = np.array([RIGHT_JUMP, 4, 7])
    for _ in range(20):
        obs, *_ = venv.step(a)
        obs2, *_ = other.step(a[[1, 0]])
        assert np.array_equal(obs2[1], obs[0])
    # The levels after it come from the configured range again.
    obs, info = venv.reset()
    assert all(100 <= s < 103 for s in info["level_seed"].tolist())
    for bad in ([1, 2], [1, 2, -1], [1, 2, 2**31], [0.5, 1, 2]):
        with pytest.raises(ValueError, match="level_seeds"):
            venv.reset(options={"level_seeds": bad})
    with pytest.raises(ValueError, match="options"):
        venv.reset(options={"levels": [1, 2, 3]})


# --------------------------------------------------------------------------------------
# Gymnasium contract, arguments, installation
# --------------------------------------------------------------------------------------


def test_gymnasium_checker_passes():
    env = gym.make(ENV_ID, rand_fraction=0.5, render_mode="rgb_array")
    check_env(env.unwrapped)
    obs, info = env.reset(seed=1)
    assert obs.shape == (64, 64, 3) and set(INFO_KEYS) <= set(info)
    assert env.render().shape == (512, 512, 3)
    env.close()


def test_single_env_episode_flow():
    env = ProcgenCoinRunEnv(rand_fraction=1.0, coin_region=(0.0, 0.01))
    obs, info = env.reset(seed=3)
    seed0 = info["level_seed"]
    for _ in range(200):
        obs, reward, terminated, truncated, info = env.step(RIGHT_JUMP)
        if terminated or truncated:
            break
        assert not np.isnan(info["agent_x"])  # track_agent defaults to True here
    with pytest.raises(RuntimeError, match="reset"):
        env.step(4)
    obs, info = env.reset()
    assert info["level_seed"] != seed0 and info["agent_x"] == 1.5
    env.step(4)
    obs2, info2 = env.reset()  # mid-episode: moves on to another level
    assert info2["level_seed"] != info["level_seed"]


def test_make_vec_api():
    venv = gym.make_vec(ENV_ID, num_envs=4, rand_fraction=0.5)
    assert isinstance(venv.unwrapped, ProcgenCoinRunVectorEnv)
    assert venv.metadata["autoreset_mode"] == gym.vector.AutoresetMode.NEXT_STEP
    obs, info = venv.reset(seed=0)
    assert obs.shape == (4, 64, 64, 3) and obs.dtype == np.uint8
    assert venv.observation_space.contains(obs)
    for key in INFO_KEYS:
        assert info[key].shape == (4,) and info["_" + key].all()
    obs, reward, terminated, truncated, info = venv.step(venv.action_space.sample())
    assert reward.dtype == np.float32 and terminated.dtype == bool and truncated.dtype == bool
    obs_b, _ = venv.reset(seed=0)
    obs_c, _ = venv.reset(seed=0)
    assert np.array_equal(obs_b, obs_c)
    venv.close()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            dict(obs_mode="rgb"),
            r"obs_mode='rgb' is invalid; accepted values are \('symbolic', 'pixels'\)",
        ),
        (dict(view_size=13), r"view_size=13 is invalid with obs_mode='pixels'"),
        (dict(obs_mode="symbolic", view_size=12), "view_size=12 is invalid; it must be an odd int"),
        (dict(device="cuda"), "CPU"),
        (dict(rand_fraction=1.5), "rand_fraction"),
        (dict(coin_placement="middle"), "coin_placement"),
        (dict(distribution_mode="memory"), "distribution_mode"),
        (dict(render_mode="human"), "render_mode"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ProcgenCoinRunVectorEnv(num_envs=2, **kwargs)


def test_invalid_seeds_and_actions():
    venv = ProcgenCoinRunVectorEnv(num_envs=2)
    with pytest.raises(ValueError, match="single rand_seed"):
        venv.reset(seed=[1, 2])
    with pytest.raises(ValueError, match=r"2\*\*31"):
        venv.reset(seed=2**31)
    with pytest.raises(RuntimeError, match="reset"):
        venv.step(np.zeros(2, dtype=int))
    venv.reset(seed=1)
    for bad in (np.zeros(3, dtype=int), np.zeros(2), np.array([0, 15])):
        with pytest.raises(ValueError, match="invalid|out of range"):
            venv.step(bad)


def test_import_does_not_load_procgen_or_gym():
    code = (
        "import sys, gymnasium, coinrun_mg\n"
        "spec = gymnasium.spec('coinrun_mg/ProcgenCoinRun-v0')\n"
        "assert spec.vector_entry_point.endswith(':ProcgenCoinRunVectorEnv')\n"
        "import coinrun_mg.envs.coinrun.procgen_env\n"
        "assert 'procgen' not in sys.modules and 'gym' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_procgen_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "procgen", None)  # makes `import procgen` fail
    with pytest.raises(ImportError, match=r"coinrun-mg\[procgen\]") as err:
        gym.make(ENV_ID)
    assert INSTALL_COMMAND in str(err.value)
