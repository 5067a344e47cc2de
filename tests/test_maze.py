"""Maze-v0: moves on hand-built mazes, the events, scripted walkers, the Gymnasium
contract, single env = vector slice, determinism and argument errors."""

from __future__ import annotations

import hashlib

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import coinrun_mg
from coinrun_mg.envs.events import GAME_EVENTS, family_events
from coinrun_mg.envs.maze import observation as render
from coinrun_mg.envs.maze.ascii import state_from_ascii
from coinrun_mg.envs.maze.config import MazeConfig
from coinrun_mg.envs.maze.core import INFO_KEYS, MazeCore
from coinrun_mg.envs.maze.gym_env import MazeEnv, MazeVectorEnv
from coinrun_mg.envs.maze.solver import ShortestPathWalker
from coinrun_mg.envs.rng import level_seeds_for

ENV_ID = coinrun_mg.MAZE_ENV_ID

# A hand-built 5 x 5 maze (top line = highest row): the agent in the middle of a cross.
CROSS = [
    ".#c#.",
    ".#.#.",
    "..A..",
    "##.##",
    ".....",
]


def _core_on(drawing, corner_size: int = 1, **config) -> MazeCore:
    """A one-environment core playing a hand-built maze (no autoreset: the next level
    would not fit the drawing's world)."""
    config = MazeConfig(corner_size=corner_size, **config)
    core = MazeCore(1, config, device="cpu", autoreset="disabled")
    core.reset(0)
    core.state = state_from_ascii(drawing, corner_size)
    return core


def _agent(core) -> tuple[int, int]:
    return int(core.state.agent_x[0]), int(core.state.agent_y[0])


# --- moves --------------------------------------------------------------------------------

# procgen's action table: 0-2 left, 3 down, 4 none, 5 up, 6-8 right, 9-14 none.
EXPECTED_MOVE = {0: (-1, 0), 1: (-1, 0), 2: (-1, 0), 3: (0, -1), 4: (0, 0), 5: (0, 1)}
EXPECTED_MOVE |= {6: (1, 0), 7: (1, 0), 8: (1, 0)} | {a: (0, 0) for a in range(9, 15)}


@pytest.mark.parametrize("action", range(15))
def test_each_action_moves_as_procgen_maps_it(action):
    core = _core_on(CROSS)
    core.step(torch.tensor([action]))
    dx, dy = EXPECTED_MOVE[action]
    assert _agent(core) == (2 + dx, 2 + dy)


def test_walls_and_the_world_edge_block_moves():
    core = _core_on(CROSS)
    core.step(torch.tensor([7]))  # right to (3, 2)
    for blocked in (5, 3):  # walls above and below
        core.step(torch.tensor([blocked]))
        assert _agent(core) == (3, 2)
    core.step(torch.tensor([7]))
    core.step(torch.tensor([7]))  # the world ends at x = 4
    assert _agent(core) == (4, 2)
    core.step(torch.tensor([5]))
    core.step(torch.tensor([5]))
    core.step(torch.tensor([5]))  # and at y = 4
    assert _agent(core) == (4, 4)
    assert int(core.state.steps[0]) == 8


def test_the_cheese_pays_10_and_ends_the_episode():
    core = _core_on(CROSS)
    _, reward, terminated, truncated, info = core.step(torch.tensor([5]))
    assert float(reward[0]) == 0.0 and not bool(terminated[0])
    _, reward, terminated, truncated, info = core.step(torch.tensor([5]))
    assert float(reward[0]) == 10.0 and bool(terminated[0]) and not bool(truncated[0])
    assert bool(info["cheese_collected"][0]) and not bool(info["timed_out"][0])
    assert not bool(info["died"][0])
    with pytest.raises(RuntimeError, match="reset"):
        core.step(torch.tensor([4]))


def test_timeout_truncates_at_max_episode_steps():
    core = _core_on(CROSS)
    for t in range(1, 501):
        _, reward, terminated, truncated, info = core.step(torch.tensor([4]))
        assert bool(truncated[0]) == (t == 500) and not bool(terminated[0])
        assert bool(info["timed_out"][0]) == (t == 500) and float(reward[0]) == 0.0
    with pytest.raises(RuntimeError, match="reset"):
        core.step(torch.tensor([4]))


def test_reached_corner_is_sticky_and_corner_terminates_ends_there():
    # Corner region 2 x 2: cells x, y >= 3.  From (2, 2): right, right, up, up enters it at
    # (4, 3); going back down leaves it, the flag stays.
    core = _core_on(CROSS, corner_size=2)
    flags = []
    for a in (7, 7, 5, 3, 3):
        _, reward, terminated, _, info = core.step(torch.tensor([a]))
        flags.append(bool(info["reached_corner"][0]))
        assert not bool(terminated[0]) and float(reward[0]) == 0.0
    assert flags == [False, False, True, True, True]

    core = _core_on(CROSS, corner_size=2, corner_terminates=True)
    for a in (7, 7):
        assert not bool(core.step(torch.tensor([a]))[2][0])
    _, reward, terminated, _, info = core.step(torch.tensor([5]))
    assert bool(terminated[0]) and float(reward[0]) == 0.0
    assert bool(info["reached_corner"][0]) and not bool(info["cheese_collected"][0])


# --- scripted walkers ---------------------------------------------------------------------


def _walk(core: MazeCore, target: str, steps: int) -> dict[str, torch.Tensor]:
    """Play one episode per environment with a walker; the infos of each env's end."""
    walker = ShortestPathWalker(core, target)
    ended = torch.zeros(core.num_envs, dtype=torch.bool)
    last = {}
    for _ in range(steps):
        _, _, terminated, truncated, info = core.step(walker())
        done = (terminated | truncated) & ~ended
        for k, v in info.items():
            last[k] = torch.where(done, v, last.get(k, v))
        ended |= done
        if bool(ended.all()):
            break
    assert bool(ended.all())
    return last


@pytest.mark.parametrize("mode", ["easy", "hard"])
def test_cheese_walker_collects_the_cheese_within_the_timeout(mode):
    core = MazeCore(400, MazeConfig(distribution_mode=mode, rand_fraction=0.5), device="cpu")
    core.reset(11)
    ev = family_events(_walk(core, "cheese", 500), "maze")
    assert bool(ev["goal_reached"].all()) and not bool(ev["timed_out"].any())
    assert not bool(ev["died"].any())
    assert 0.3 < float(ev["goal_moved"].float().mean()) < 0.7


def test_walkers_part_on_decision_levels():
    config = MazeConfig(rand_fraction=1.0)
    cheese_core, corner_core = (MazeCore(300, config, device="cpu") for _ in range(2))
    cheese_core.reset(5)
    corner_core.reset(5)
    decision = cheese_core.state.decision_level.clone()
    assert 0.2 < float(decision.float().mean()) < 0.9
    to_cheese = _walk(cheese_core, "cheese", 500)
    to_corner = _walk(corner_core, "corner", 500)
    # The corner walker reaches the corner unless it collects the cheese on its way.
    assert bool((to_corner["reached_corner"] | to_corner["cheese_collected"]).all())
    assert bool(to_corner["reached_corner"][decision].all())
    # On decision levels neither walker meets the other's target; on the others one does
    # (the cheese is on the way to the corner, or the corner on the way to the cheese).
    assert not bool(to_cheese["reached_corner"][decision].any())
    assert not bool(to_corner["cheese_collected"][decision].any())
    assert bool((to_cheese["reached_corner"] | to_corner["cheese_collected"])[~decision].all())


def test_corner_terminates_while_the_cheese_lies_elsewhere(one_torch_thread):
    # Easy mazes (at most 15 x 15 cells, 127 of them open) have no path longer than 126
    # moves, so 130-step episodes leave the walker time to reach the corner.
    config = MazeConfig(
        distribution_mode="easy",
        corner_size=3,
        rand_fraction=0.5,
        corner_terminates=True,
        max_episode_steps=130,
    )
    core = MazeCore(200, config, device="cpu")
    core.reset(2)
    s = core.state
    inside = (s.cheese_x >= s.corner_lo) & (s.cheese_y >= s.corner_lo)
    info = _walk(core, "corner", 130)
    # The cheese elsewhere: the corner walker's episode ends in the region (or on a cheese
    # that lies on its way).
    ended_early = info["reached_corner"] | info["cheese_collected"]
    assert bool(ended_early[~inside].all()) and not bool(info["timed_out"][~inside].any())
    # The cheese in the region: entering it does not end the episode.
    assert int(inside.sum()) >= 50
    assert bool((info["cheese_collected"] | info["timed_out"])[inside].all())
    assert bool(info["timed_out"][inside].any())


# --- observations -------------------------------------------------------------------------


def test_symbolic_planes_have_row_0_at_the_top():
    core = _core_on(CROSS)
    obs = core.observe()[0]  # [5, 5, 3]
    assert obs.shape == (5, 5, 3) and obs.dtype == torch.uint8
    names = render.SYMBOLIC_CHANNEL_NAMES
    wall, cheese, agent = (obs[..., names.index(n)] for n in ("wall", "cheese", "agent"))
    expected_wall = torch.tensor([[ch == "#" for ch in line] for line in CROSS]) * 255
    assert torch.equal(wall, expected_wall.to(torch.uint8))
    assert cheese.nonzero().tolist() == [[0, 2]] and int(cheese.max()) == 255
    assert agent.nonzero().tolist() == [[2, 2]]


def test_pixels_draw_the_whole_world_with_y_up():
    core = MazeCore(1, MazeConfig(obs_mode="pixels"), device="cpu")
    core.reset(0)
    core.state = state_from_ascii(CROSS)
    image = core.observe()[0]  # 64 x 64, 12.8 pixels per cell
    assert image.shape == (64, 64, 3)
    colours = {
        name: torch.tensor(c, dtype=torch.uint8)
        for name, c in zip(render.CELL_COLOUR_NAMES, render.CELL_COLOURS, strict=True)
    }
    assert torch.equal(image[6, 32], colours["cheese"])  # top row, middle column
    assert torch.equal(image[32, 32], colours["agent"])
    assert torch.equal(image[6, 19], colours["wall"])
    assert torch.equal(image[58, 6], colours["open"])  # the start, bottom left


def test_pixel_tables_given_by_the_core_or_made_draw_the_same():
    # The core hands pixel_obs its tables (so that a compiled render need not make them);
    # tables of another world side are made afresh, not misused.
    core = MazeCore(4, MazeConfig(obs_mode="pixels", distribution_mode="easy"), device="cpu")
    core.reset(0)
    made = render.pixel_obs(core.state)
    assert torch.equal(core.observe(), made)
    assert torch.equal(render.pixel_obs(core.state, render.word_tables(15, "cpu")), made)
    assert torch.equal(render.pixel_obs(core.state, render.word_tables(25, "cpu")), made)


def test_agent_centred_view_is_the_world_window_around_the_agent():
    # On the CROSS maze (a 5 x 5 world, the agent in its middle) a 3-cell view shows the
    # cells around the agent; a 9-cell one (2 * 5 - 1) all of the world, walls outside.
    core = _core_on(CROSS, view_size=3)
    assert core.observation_shape == (3, 3, 3)
    obs = core.observe()[0]
    assert obs[..., 0].tolist() == [[255, 0, 255], [0, 0, 0], [255, 0, 255]]
    assert obs[..., 2].nonzero().tolist() == [[1, 1]] and obs[..., 1].sum() == 0
    core.step(torch.tensor([5]))  # up: the cheese now right above the agent
    obs = core.observe()[0]
    assert obs[..., 1].nonzero().tolist() == [[0, 1]]
    whole = _core_on(CROSS, view_size=9).observe()[0]
    full = _core_on(CROSS).observe()[0]
    assert torch.equal(whole[2:7, 2:7], full) and whole[..., 0].sum() == 255 * (81 - 25 + 8)
    corner = _core_on(CROSS, view_size=9)
    corner.state.agent_x[:] = 0  # the bottom-left cell: the world fills the top right
    corner.state.agent_y[:] = 0
    obs = corner.observe()[0]
    assert torch.equal(obs[:5, 4:, 0], full[..., 0]) and obs[4, 4, 2] == 255


@pytest.mark.parametrize("mode", ["easy", "hard"])
def test_agent_centred_view_matches_a_crop_of_the_whole_world(mode):
    # Random play with autoresets: every step, the view of side 2 * D - 1 is the whole
    # world's planes padded with wall and cut around the agent.
    whole = MazeCore(16, MazeConfig(distribution_mode=mode, max_episode_steps=30), "cpu")
    d = whole.config.world_dim
    config = MazeConfig(distribution_mode=mode, max_episode_steps=30, view_size=2 * d - 1)
    ego = MazeCore(16, config, device="cpu")
    full, obs = whole.reset(4)[0], ego.reset(4)[0]
    gen = torch.Generator().manual_seed(0)
    for _ in range(40):
        padded = torch.zeros((16, 3 * d - 2, 3 * d - 2, 3), dtype=torch.uint8)
        padded[..., 0] = 255  # wall outside the world
        padded[:, d - 1 : 2 * d - 1, d - 1 : 2 * d - 1] = full
        for i in range(16):
            row, col = d - 1 - int(whole.state.agent_y[i]), int(whole.state.agent_x[i])
            assert torch.equal(obs[i], padded[i, row : row + 2 * d - 1, col : col + 2 * d - 1])
        assert torch.equal(ego.observe(torch.tensor([3, 1])), obs[[3, 1]])
        actions = torch.randint(0, 15, (16,), generator=gen)
        full, obs = whole.step(actions)[0], ego.step(actions)[0]


def test_agent_centred_view_through_gymnasium():
    env = gym.make(ENV_ID, view_size=29, distribution_mode="easy")
    check_env(env.unwrapped)
    assert env.observation_space.shape == (29, 29, 3)
    venv = gym.make_vec(ENV_ID, num_envs=3, device="cpu", view_size=5)
    obs, _ = venv.reset(seed=0)
    assert obs.shape == (3, 5, 5, 3) and (obs[:, 2, 2, 2] == 255).all()


# --- the Gymnasium contract ----------------------------------------------------------------


@pytest.mark.parametrize("obs_mode", ["symbolic", "pixels"])
def test_gymnasium_checker_passes(obs_mode):
    env = gym.make(ENV_ID, obs_mode=obs_mode, render_mode="rgb_array")
    check_env(env.unwrapped)
    obs, info = env.reset(seed=1)
    assert env.observation_space.contains(obs)
    assert set(INFO_KEYS) <= set(info)
    frame = env.render()
    assert frame.shape == (512, 512, 3) and frame.dtype == np.uint8


def test_make_vec_and_family_events():
    venv = gym.make_vec(ENV_ID, num_envs=4, device="cpu", distribution_mode="easy")
    assert isinstance(venv.unwrapped, MazeVectorEnv)
    obs, info = venv.reset(seed=0)
    assert obs.shape == (4, 15, 15, 3) and obs.dtype == np.uint8
    for key in INFO_KEYS:
        assert info[key].shape == (4,) and info["_" + key].all()
    obs, reward, terminated, truncated, info = venv.step(venv.action_space.sample())
    assert reward.dtype == np.float32 and terminated.dtype == bool
    events = family_events(info, "maze")
    assert set(events) == {
        "goal_reached",
        "proxy_reached",
        "goal_moved",
        "died",
        "timed_out",
        "level_seed",
    }
    assert set(GAME_EVENTS["maze"].keys()) <= set(INFO_KEYS)
    assert events["proxy_reached"] is info["reached_corner"]
    assert not events["died"].any()
    venv.close()


def _rollout_single(seed, actions, **config):
    env = MazeEnv(**config)
    obs, info = env.reset(seed=seed)
    out = [(obs, 0.0, False, False, info)]
    for a in actions:
        obs, r, te, tr, info = env.step(int(a))
        out.append((obs, r, te, tr, info))
        if te or tr:
            obs, info = env.reset()
            out.append((obs, 0.0, False, False, info))
    return out


def test_single_env_matches_the_vector_slice():
    """Env i of a vector env seeded s plays exactly what a single env seeded s + i plays."""
    config = dict(distribution_mode="easy", max_episode_steps=15, rand_fraction=0.5)
    rng = np.random.default_rng(0)
    n, steps, seed = 3, 80, 40
    actions = rng.integers(0, 15, size=(steps, n))
    venv = MazeVectorEnv(num_envs=n, device="cpu", **config)
    obs, info = venv.reset(seed=seed)
    vec = [[(obs[i], 0.0, False, False, {k: info[k][i] for k in INFO_KEYS})] for i in range(n)]
    for t in range(steps):
        obs, r, te, tr, info = venv.step(actions[t])
        for i in range(n):
            row = (
                obs[i],
                float(r[i]),
                bool(te[i]),
                bool(tr[i]),
                {k: info[k][i] for k in INFO_KEYS},
            )
            vec[i].append(row)
    for i in range(n):
        # NEXT_STEP: the step after an end only resets, consuming its action.
        single_actions, j = [], 1
        while j < len(vec[i]):
            single_actions.append(actions[j - 1, i])
            j += 2 if (vec[i][j][2] or vec[i][j][3]) else 1
        single = _rollout_single(seed + i, single_actions, **config)
        assert len(single) >= len(vec[i]) - 1 and sum(r[2] or r[3] for r in vec[i]) >= 4
        for a, b in zip(vec[i], single):
            np.testing.assert_array_equal(a[0], b[0])
            assert a[1:4] == b[1:4]
            assert {k: a[4][k] for k in INFO_KEYS} == {k: b[4][k] for k in INFO_KEYS}


def test_same_seed_same_trajectory_and_different_seed_differs():
    def run(seed):
        core = MazeCore(16, MazeConfig(max_episode_steps=40), device="cpu")
        obs, _ = core.reset(seed)
        gen = torch.Generator().manual_seed(7)
        frames, seeds = [obs], []
        for _ in range(100):
            obs, r, te, tr, info = core.step(torch.randint(0, 15, (16,), generator=gen))
            frames.append(obs)
            seeds.append(info["level_seed"])
        return torch.stack(frames), torch.stack(seeds)

    a, b, c = run(5), run(5), run(6)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


@pytest.mark.parametrize("prefetch", [1, 3, 10**9])
def test_each_env_plays_its_own_level_sequence(prefetch):
    config = MazeConfig(max_episode_steps=5, distribution_mode="easy")
    core = MazeCore(6, config, device="cpu", prefetch=prefetch)
    core.reset(seed=7)
    g = torch.Generator().manual_seed(2)
    for t in range(40):
        core.step(torch.randint(0, 15, (6,), generator=g))
        s = core.state
        assert torch.equal(s.level_seed, level_seeds_for(s.env_key, s.episode, config))
        if t == 12:
            core.reset_keys(torch.tensor([50, 51]), torch.tensor([0, 4]))
            assert core.state.episode[[0, 4]].tolist() == [0, 0]
    assert int(core.state.episode.min()) >= 4

    restored = MazeCore(6, config, device="cpu", prefetch=prefetch)
    restored.reset(seed=0)
    restored.load_state_dict(core.state_dict())
    for _ in range(12):
        actions = torch.randint(0, 15, (6,), generator=g)
        expect, got = core.step(actions), restored.step(actions)
        assert all(torch.equal(x, y) for x, y in zip(expect[:4], got[:4], strict=True))
        assert torch.equal(core.state.level_seed, restored.state.level_seed)


def test_levels_follow_num_levels_and_start_level():
    core = MazeCore(256, MazeConfig(num_levels=10, start_level=500), device="cpu")
    core.reset(0)
    s = core.state.level_seed
    assert int(s.min()) >= 500 and int(s.max()) < 510 and int(s.unique().numel()) == 10


# --- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"rand_fraction": 1.5}, "rand_fraction=1.5"),
        ({"rand_fraction": "2%"}, "rand_fraction='2%'"),
        ({"obs_mode": "rgb"}, "obs_mode='rgb'"),
        ({"distribution_mode": "memory"}, "distribution_mode='memory'"),
        ({"num_levels": -1}, "num_levels=-1"),
        ({"start_level": -3}, "start_level=-3"),
        ({"corner_size": 0}, "corner_size=0"),
        ({"corner_size": 2.5}, "corner_size=2.5"),
        ({"corner_terminates": "yes"}, "corner_terminates='yes'"),
        ({"max_episode_steps": 0}, "max_episode_steps=0"),
        ({"render_mode": "ansi"}, "render_mode='ansi'"),
        ({"compile": "maybe"}, "compile='maybe'"),
        ({"view_size": 4}, "view_size=4 is invalid; it must be 0"),
        ({"view_size": 1}, "view_size=1 is invalid; it must be 0"),
        ({"view_size": -3}, "view_size=-3"),
        ({"view_size": 9, "obs_mode": "pixels"}, "view_size=9 is invalid with obs_mode='pixels'"),
    ],
)
@pytest.mark.filterwarnings("ignore:.*render_mode.*:UserWarning")
def test_bad_arguments_name_the_parameter(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MazeEnv(**kwargs)
    if "max_episode_steps" not in kwargs:
        with pytest.raises(ValueError, match=match):
            gym.make(ENV_ID, **kwargs)
    with pytest.raises(ValueError, match=match):
        gym.make_vec(ENV_ID, num_envs=2, device="cpu", **kwargs)


def test_bad_num_envs_device_actions_and_seeds():
    with pytest.raises(ValueError, match="num_envs=0"):
        gym.make_vec(ENV_ID, num_envs=0, device="cpu")
    with pytest.raises(ValueError, match="device='tpu'"):
        gym.make_vec(ENV_ID, num_envs=2, device="tpu")
    with pytest.raises(ValueError, match="autoreset='sometimes'"):
        MazeCore(2, device="cpu", autoreset="sometimes")
    with pytest.raises(ValueError, match="target='door'"):
        ShortestPathWalker(MazeCore(1, device="cpu"), "door")
    venv = MazeVectorEnv(num_envs=2, device="cpu")
    with pytest.raises(RuntimeError, match="before reset"):
        venv.step(np.array([1, 2]))
    with pytest.raises(ValueError, match="seed=-1"):
        venv.reset(seed=-1)
    # Seed keys are int64: a key past it would wrap around or overflow, so it is refused.
    with pytest.raises(ValueError, match=r"seed=9223372036854775807 .* must not pass 2\*\*63"):
        venv.reset(seed=2**63 - 1)  # its second env's key would be 2**63
    with pytest.raises(ValueError, match=r"seed=\[0, 18446744073709551616\] .*\[0, 2\*\*63\)"):
        venv.reset(seed=[0, 2**64])
    venv.reset(seed=2**63 - 2)  # the last keys that fit
    venv.reset(seed=0)
    with pytest.raises(ValueError, match="out of range"):
        venv.step(np.array([0, 15]))
    with pytest.raises(ValueError, match="shape"):
        venv.step(np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="dtype float"):
        venv.step(np.array([0.5, 1.0]))
    env = MazeEnv()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action=20"):
        env.step(20)


@pytest.mark.parametrize("obs_mode, view_size", [("symbolic", 0), ("pixels", 0), ("symbolic", 29)])
def test_compiled_steps_match_eager_ones(obs_mode, view_size):
    # Integer moves and lookups only: a compiled core (or its eager fallback where no
    # compiler is installed) must agree with the eager one exactly.
    config = MazeConfig(
        obs_mode=obs_mode, max_episode_steps=20, distribution_mode="easy", view_size=view_size
    )
    compiled = MazeCore(32, config, device="cpu", compile=True)
    eager = MazeCore(32, config, device="cpu", compile=False)
    assert torch.equal(compiled.reset(3)[0], eager.reset(3)[0])
    g = torch.Generator().manual_seed(0)
    for _ in range(40):
        actions = torch.randint(0, 15, (32,), generator=g)
        got, expect = compiled.step(actions), eager.step(actions)
        assert all(torch.equal(a, b) for a, b in zip(got[:4], expect[:4], strict=True))
        assert all(torch.equal(got[4][k], expect[4][k]) for k in INFO_KEYS)


def _pinned_digest(**config) -> str:
    """sha256 of 32 environments' observations, rewards, ends and infos over 200 steps
    (eager, CPU), with actions from a fixed integer recurrence (no library RNG)."""
    core = MazeCore(32, MazeConfig(**config), device="cpu", compile=False)
    obs, _ = core.reset(seed=3)
    digest = hashlib.sha256(obs.numpy().tobytes())
    state = 12345
    for _ in range(200):
        actions = []
        for _ in range(32):
            state = (state * 1103515245 + 12345) % 2**31
            actions.append((state >> 16) % 15)
        obs, reward, terminated, truncated, info = core.step(torch.tensor(actions))
        for t in (obs, reward, terminated, truncated, *(info[k] for k in INFO_KEYS)):
            digest.update(t.numpy().tobytes())
    return digest.hexdigest()[:16]


# Maze-v0's levels, moves and observations, pinned: a deliberate change to what the
# environment does must change its version (Maze-v1) and these digests.
PINNED = {
    "symbolic-hard": (dict(obs_mode="symbolic", max_episode_steps=60), "c61c1a4659905cba"),
    "symbolic-easy": (
        dict(distribution_mode="easy", corner_size=3, rand_fraction=0.3),
        "814f8beb6e6af024",
    ),
    "pixels-hard": (
        dict(obs_mode="pixels", corner_size=5, corner_terminates=True),
        "3c1a057df66eaa87",
    ),
}


@pytest.mark.parametrize("case", list(PINNED))
def test_v0_dynamics_are_pinned(case):
    config, expected = PINNED[case]
    assert _pinned_digest(**config) == expected


@pytest.mark.parametrize("view_size", [0, 7])
def test_kept_wall_image_follows_level_changes(view_size):
    # MazeCore keeps the symbolic view's wall image between steps; every way a level
    # changes (episode starts, reset_keys, a new state, load_state_dict) must redraw it.
    config = MazeConfig(obs_mode="symbolic", max_episode_steps=20, view_size=view_size)

    def view(state):
        return render.egocentric_obs(state, view_size) if view_size else render.symbolic_obs(state)

    core = MazeCore(16, config, device="cpu")
    core.reset(seed=2)
    gen = torch.Generator().manual_seed(0)
    for t in range(45):
        obs = core.step(torch.randint(0, 15, (16,), generator=gen))[0]
        assert torch.equal(obs, view(core.state)), t
    core.reset_keys(torch.tensor([40, 41]), torch.tensor([3, 7]))
    assert torch.equal(core.observe(), view(core.state))
    index = torch.tensor([7, 0])
    assert torch.equal(core.observe(index), view(core.state.index(index)))
    other = MazeCore(16, config, device="cpu")
    other.reset(seed=9)
    other.load_state_dict(core.state_dict())
    assert torch.equal(other.observe(), core.observe())
    other.state = core.state.index(torch.arange(15, -1, -1))  # a whole new state
    assert torch.equal(other.observe(), core.observe().flip(0))
