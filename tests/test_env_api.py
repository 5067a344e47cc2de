"""The Gymnasium contract, vector/single equivalence, determinism and argument errors."""

from __future__ import annotations

import hashlib

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import coinrun_mg  # noqa: F401  (registers the environments)
from coinrun_mg.envs.coinrun import observation as render
from coinrun_mg.envs.coinrun.config import CoinRunConfig
from coinrun_mg.envs.coinrun.core import INFO_KEYS, CoinRunCore, level_seeds_for
from coinrun_mg.envs.coinrun.gym_env import CoinRunEnv, CoinRunVectorEnv
from coinrun_mg.envs.coinrun.observation import SYMBOLIC_CHANNEL_NAMES, symbolic_obs

ENV_ID = "coinrun_mg/CoinRun-v0"


@pytest.mark.parametrize("obs_mode", ["symbolic", "pixels"])
def test_gymnasium_checker_passes(obs_mode):
    env = gym.make(ENV_ID, obs_mode=obs_mode, render_mode="rgb_array")
    check_env(env.unwrapped)
    obs, info = env.reset(seed=1)
    assert env.observation_space.contains(obs)
    assert set(INFO_KEYS) <= set(info)
    frame = env.render()
    assert frame.ndim == 3 and frame.shape[2] == 3 and frame.shape[0] >= 256


def test_make_vec_uses_the_native_vector_env():
    venv = gym.make_vec(ENV_ID, num_envs=4, device="cpu", obs_mode="symbolic")
    assert isinstance(venv.unwrapped, CoinRunVectorEnv)
    assert venv.metadata["autoreset_mode"] == gym.vector.AutoresetMode.NEXT_STEP
    obs, info = venv.reset(seed=0)
    assert obs.shape == (4, 13, 13, 10) and obs.dtype == np.uint8
    assert venv.observation_space.contains(obs)
    for key in INFO_KEYS:
        assert info[key].shape == (4,) and info["_" + key].all()
    obs, reward, terminated, truncated, info = venv.step(venv.action_space.sample())
    assert reward.dtype == np.float32 and terminated.dtype == bool and truncated.dtype == bool
    assert isinstance(venv.unwrapped.core, CoinRunCore)
    venv.close()


def test_device_auto_resolves():
    venv = gym.make_vec(ENV_ID, num_envs=2, device="auto")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert venv.unwrapped.core.device.type == expected


def _rollout_single(seed, actions):
    env = CoinRunEnv(obs_mode="symbolic")
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
    rng = np.random.default_rng(0)
    n, steps, seed = 3, 300, 40
    actions = rng.integers(0, 15, size=(steps, n))
    venv = CoinRunVectorEnv(num_envs=n, device="cpu", obs_mode="symbolic")
    obs, info = venv.reset(seed=seed)
    vec = [[(obs[i], 0.0, False, False, {k: info[k][i] for k in INFO_KEYS})] for i in range(n)]
    restarting = np.zeros(n, dtype=bool)
    for t in range(steps):
        step_actions = actions[t].copy()
        obs, r, te, tr, info = venv.step(step_actions)
        for i in range(n):
            row = (
                obs[i],
                float(r[i]),
                bool(te[i]),
                bool(tr[i]),
                {k: info[k][i] for k in INFO_KEYS},
            )
            vec[i].append(row)
        restarting = te | tr
    del restarting
    for i in range(n):
        # Replay env i's actions in a single env; NEXT_STEP resets consume an action.
        single_actions, records = [], vec[i]
        j = 1
        while j < len(records):
            single_actions.append(actions[j - 1, i])
            if records[j][2] or records[j][3]:
                j += 2  # the vector env's reset step
            else:
                j += 1
        single = _rollout_single(seed + i, single_actions)
        vec_rows = [rec for rec in records]
        assert len(single) >= len(vec_rows) - 1
        for a, b in zip(vec_rows, single):
            np.testing.assert_array_equal(a[0], b[0])
            assert a[1:4] == b[1:4]
            for k in INFO_KEYS:
                assert a[4][k] == pytest.approx(b[4][k])


def test_same_seed_same_trajectory_and_different_seed_differs():
    def run(seed):
        core = CoinRunCore(16, device="cpu")
        obs, _ = core.reset(seed)
        gen = torch.Generator().manual_seed(7)
        frames, rewards, seeds = [obs], [], []
        for _ in range(200):
            obs, r, te, tr, info = core.step(torch.randint(0, 15, (16,), generator=gen))
            frames.append(obs)
            rewards.append(r)
            seeds.append(info["level_seed"])
        return torch.stack(frames), torch.stack(rewards), torch.stack(seeds)

    a, b, c = run(5), run(5), run(6)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[2], c[2])


def _pinned_digest(**config) -> str:
    """sha256 of 32 environments' observations, rewards, ends and positions over 250 steps
    (eager, CPU), with actions from a fixed integer recurrence (no library RNG, so no
    torch or numpy version changes them)."""
    core = CoinRunCore(32, CoinRunConfig(**config), device="cpu", compile=False)
    obs, _ = core.reset(seed=3)
    digest = hashlib.sha256(obs.numpy().tobytes())
    state = 12345
    for _ in range(250):
        actions = []
        for _ in range(32):
            state = (state * 1103515245 + 12345) % 2**31
            k = (state >> 16) % 30  # half of them run or jump to the right
            actions.append(k if k < 15 else 7 + k % 2)
        obs, reward, terminated, truncated, info = core.step(torch.tensor(actions))
        for t in (obs, reward, terminated, truncated, info["agent_x"], core.state.agent_y):
            digest.update(t.numpy().tobytes())
    return digest.hexdigest()[:16]


# CoinRun-v0's dynamics, levels and observations, pinned: results recorded with one
# version of the package (the README's reproduction) stay valid only while these hold.
# A deliberate change to what the environment does must change the environment's
# version (CoinRun-v1) and these digests, and say so in the README.
PINNED = {
    "symbolic-hard": (dict(obs_mode="symbolic", distribution_mode="hard"), "b09f9ce9472dd60d"),
    "symbolic-easy": (dict(obs_mode="symbolic", distribution_mode="easy"), "c3b911a612b77f87"),
    "pixels-hard": (dict(obs_mode="pixels", distribution_mode="hard"), "7113b83f8937a703"),
    # The test configuration: every coin moved, episodes end at the original end.
    "symbolic-easy-moved": (
        dict(obs_mode="symbolic", distribution_mode="easy", rand_fraction=1.0, end_terminates=True),
        "0d02918a35a99767",
    ),
}


@pytest.mark.parametrize("case", list(PINNED))
def test_v0_dynamics_are_pinned(case):
    config, expected = PINNED[case]
    assert _pinned_digest(**config) == expected


def test_levels_follow_num_levels_and_start_level():
    core = CoinRunCore(64, device="cpu", config=None)
    core.reset(0)
    seeds = core.state.level_seed
    assert int(seeds.unique().numel()) == 64  # unlimited: (almost surely) all distinct
    from coinrun_mg.envs.coinrun.config import CoinRunConfig

    core = CoinRunCore(256, CoinRunConfig(num_levels=10, start_level=500), device="cpu")
    core.reset(0)
    s = core.state.level_seed
    assert int(s.min()) >= 500 and int(s.max()) < 510 and int(s.unique().numel()) == 10


def test_autoreset_same_step_starts_the_next_level():
    from coinrun_mg.envs.coinrun.config import CoinRunConfig

    # A short timeout guarantees episode ends (random play rarely finishes a level).
    core = CoinRunCore(8, CoinRunConfig(max_episode_steps=30), device="cpu", autoreset="same_step")
    core.reset(3)
    first_seeds = core.state.level_seed.clone()
    for _ in range(30):
        _, _, te, tr, info = core.step(torch.randint(0, 15, (8,)))
        done = te | tr
        if bool(done.any()):
            i = int(done.nonzero()[0])
            assert int(info["level_seed"][i]) == int(first_seeds[i])  # info: the ended episode
            assert int(core.state.level_seed[i]) != int(first_seeds[i])
            assert int(core.state.steps[i]) == 0
            return
    pytest.fail("no episode ended within the 30-step timeout")


# --- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"rand_fraction": 1.5}, "rand_fraction=1.5"),
        ({"rand_fraction": -0.1}, "rand_fraction=-0.1"),
        ({"rand_fraction": float("nan")}, "rand_fraction=nan"),
        ({"rand_fraction": "2%"}, "rand_fraction='2%'"),
        ({"obs_mode": "rgb"}, "obs_mode='rgb'"),
        ({"coin_placement": "left"}, "coin_placement='left'"),
        ({"distribution_mode": "extreme"}, "distribution_mode='extreme'"),
        ({"coin_region": (0.5, 0.5)}, r"coin_region=\(0.5, 0.5\)"),
        ({"coin_region": (0.9, 0.2)}, r"coin_region=\(0.9, 0.2\)"),
        ({"coin_region": (0.0,)}, r"coin_region=\(0.0,\)"),
        ({"num_levels": -1}, "num_levels=-1"),
        ({"start_level": -3}, "start_level=-3"),
        ({"view_size": 12}, "view_size=12"),
        ({"max_episode_steps": 0}, "max_episode_steps=0"),
    ],
)
def test_bad_arguments_name_the_parameter(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CoinRunEnv(**kwargs)  # gym.make keeps max_episode_steps for its own TimeLimit
    if "max_episode_steps" not in kwargs:
        with pytest.raises(ValueError, match=match):
            gym.make(ENV_ID, **kwargs)
    with pytest.raises(ValueError, match=match):
        gym.make_vec(ENV_ID, num_envs=2, device="cpu", **kwargs)


def test_numpy_numbers_are_taken_as_the_python_numbers_they_stand_for():
    # A sweep grid from numpy (np.linspace, np.arange) must not be refused as "not a float".
    from coinrun_mg.envs.maze import MazeConfig

    config = CoinRunConfig(rand_fraction=np.float32(0.25), view_size=np.int64(9))
    assert (config.rand_fraction, config.view_size) == (0.25, 9)
    assert (type(config.rand_fraction), type(config.view_size)) == (float, int)
    maze = MazeConfig(corner_size=np.int32(3), num_levels=np.uint16(10))
    assert (type(maze.corner_size), type(maze.num_levels)) == (int, int)
    env = gym.make(ENV_ID, rand_fraction=np.float64(0.5), view_size=np.int64(13))
    env.reset(seed=0)
    for bad, match in [
        ({"view_size": np.float64(13.0)}, "view_size=13.0"),
        ({"rand_fraction": np.bool_(True)}, "rand_fraction=True"),
    ]:
        with pytest.raises(ValueError, match=match):
            CoinRunConfig(**bad)


def test_bad_num_envs_and_device():
    with pytest.raises(ValueError, match="num_envs=0"):
        gym.make_vec(ENV_ID, num_envs=0, device="cpu")
    with pytest.raises(ValueError, match="device='tpu'"):
        gym.make_vec(ENV_ID, num_envs=2, device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device='cuda'.*no CUDA"):
            gym.make_vec(ENV_ID, num_envs=2, device="cuda")


def test_bad_actions_and_step_before_reset():
    venv = CoinRunVectorEnv(num_envs=2, device="cpu")
    with pytest.raises(RuntimeError, match="before reset"):
        venv.step(np.array([1, 2]))
    venv.reset(seed=0)
    with pytest.raises(ValueError, match="out of range"):
        venv.step(np.array([0, 15]))
    with pytest.raises(ValueError, match="shape"):
        venv.step(np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="dtype float"):
        venv.step(np.array([0.5, 1.0]))
    env = CoinRunEnv()
    with pytest.raises(RuntimeError, match="before reset"):
        env.step(1)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action=-1"):
        env.step(-1)
    with pytest.raises(ValueError, match="action=20"):
        env.step(20)


def test_single_env_refuses_to_step_after_the_end():
    env = CoinRunEnv(max_episode_steps=3)
    env.reset(seed=0)
    for _ in range(3):
        *_, truncated, _ = env.step(4)
    assert truncated
    with pytest.raises(RuntimeError, match="reset"):
        env.step(4)


@pytest.mark.parametrize("pairs", [False, True])
def test_core_observations_follow_level_changes(monkeypatch, pairs):
    # The core keeps each level's padded grid and its alive enemy slots between steps for
    # the symbolic view (and, on the CPU, the pair tables of large batches: forced here
    # with `pairs`; the view is wide enough to show enemies): after episodes end, partial
    # resets, a restore and a state assignment its observations must still be those of
    # the current levels.
    if pairs:
        monkeypatch.setattr(render, "_PAIRS_FROM", 1)
    core = CoinRunCore(
        8, CoinRunConfig(view_size=15, max_episode_steps=25), device="cpu", prefetch=2
    )
    core.reset(seed=3)
    g = torch.Generator().manual_seed(0)
    ended = enemies_seen = 0
    for _ in range(120):
        obs, _, terminated, truncated, _ = core.step(torch.randint(0, 15, (8,), generator=g))
        ended += int((terminated | truncated).sum())
        enemies_seen += int((obs[..., SYMBOLIC_CHANNEL_NAMES.index("enemy")] > 0).sum())
        assert torch.equal(obs, symbolic_obs(core.state, 15))
    assert ended >= 16 and enemies_seen > 0
    index = torch.tensor([1, 6])
    core.reset_keys(torch.tensor([100, 101]), index)
    assert torch.equal(core.observe(), symbolic_obs(core.state, 15))
    assert torch.equal(core.observe(index), symbolic_obs(core.state.index(index), 15))

    restored = CoinRunCore(8, CoinRunConfig(view_size=15), device="cpu")
    restored.reset(seed=99)
    restored.load_state_dict(core.state_dict())
    assert torch.equal(restored.observe(), core.observe())
    other = CoinRunCore(8, CoinRunConfig(view_size=15), device="cpu")
    other.reset(seed=5)
    restored.state = other.state
    assert torch.equal(restored.observe(), other.observe())


@pytest.mark.parametrize("prefetch", [1, 3, 10**9])
def test_each_env_plays_its_own_level_sequence(prefetch):
    # Levels come from a bank kept two deep and refilled in batches; whatever the batches,
    # environment i's k-th episode is the level of (its key, k), also after a partial
    # reset and after a restore from a checkpoint of the one-deep bank of earlier versions.
    config = CoinRunConfig(max_episode_steps=5)  # every episode ends within 5 steps
    core = CoinRunCore(6, config, device="cpu", prefetch=prefetch)
    core.reset(seed=7)
    batches = []
    fill = core._fill_bank
    core._fill_bank = lambda: batches.append(1) or fill()
    g = torch.Generator().manual_seed(2)
    for t in range(60):
        core.step(torch.randint(0, 15, (6,), generator=g))
        s = core.state
        assert torch.equal(s.level_seed, level_seeds_for(s.env_key, s.episode, config))
        if t == 20:
            core.reset_keys(torch.tensor([50, 51]), torch.tensor([0, 4]))
            assert core.state.episode[[0, 4]].tolist() == [0, 0]
    if prefetch == 10**9:  # only forced batches: an env must end 3 times since the last
        assert 60 // 15 <= len(batches) <= 60 // 10

    saved = core.state_dict()
    first = saved["bank_next"] * 6 + torch.arange(6)
    one_deep = {
        "state": saved["state"],
        "upcoming": {k: v[first] for k, v in saved["bank"].items()},
        "upcoming_ready": saved["bank_count"] > 0,
        "pending_reset": saved["pending_reset"],
    }
    restored = CoinRunCore(6, config, device="cpu", prefetch=prefetch)
    restored.reset(seed=0)
    restored.load_state_dict(one_deep)
    for _ in range(30):
        actions = torch.randint(0, 15, (6,), generator=g)
        expect, got = core.step(actions), restored.step(actions)
        assert all(torch.equal(a, b) for a, b in zip(expect[:4], got[:4], strict=True))
        assert torch.equal(core.state.level_seed, restored.state.level_seed)
