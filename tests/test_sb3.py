"""Stable-Baselines3 integration (``coinrun_mg.sb3``): the VecEnv against SB3's expectations
(same-step autoreset with terminal observations, the truncation flag, info keys, Monitor
episode stats, seeding), SB3's own ``check_env``, the symbolic features extractor, short
PPO runs, the goal/proxy callback's scalars in SB3's logger and TensorBoard, and the
procgen backend.  Small batches and short episodes: about a minute on 2 busy cores."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import warnings
from pathlib import Path

import gymnasium
import numpy as np
import pytest
import torch

import coinrun_mg  # noqa: F401 - registers the env ids
from coinrun_mg.envs.coinrun.core import INFO_KEYS, CoinRunCore
from coinrun_mg.envs.coinrun.gym_env import CoinRunEnv

with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    sb3 = pytest.importorskip("stable_baselines3")  # SB3 probes for old gym: a banner

from stable_baselines3 import PPO  # noqa: E402
from stable_baselines3.common.env_checker import check_env  # noqa: E402
from stable_baselines3.common.logger import KVWriter, configure  # noqa: E402
from stable_baselines3.common.monitor import Monitor  # noqa: E402
from stable_baselines3.common.vec_env import DummyVecEnv, VecTransposeImage  # noqa: E402

from coinrun_mg.eval import evaluate  # noqa: E402
from coinrun_mg.sb3 import (  # noqa: E402
    CoinRunSB3VecEnv,
    GoalProxyEvalCallback,
    SB3Policy,
    SymbolicCNN,
    make_vec_env,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NATIVE = "coinrun_mg/CoinRun-v0"
PROCGEN = "coinrun_mg/ProcgenCoinRun-v0"
STAND_STILL, RIGHT_JUMP = 4, 8
EASY = {"distribution_mode": "easy"}


def first_episode(seed: int, action: int, **kwargs):
    """A single env's first episode under a constant action: its last observation, length,
    reward, flags, and the first observation of the next episode."""
    env = CoinRunEnv(**kwargs)
    env.reset(seed=seed)
    steps, total = 0, 0.0
    while True:
        obs, reward, terminated, truncated, info = env.step(action)
        steps += 1
        total += reward
        if terminated or truncated:
            break
    next_obs, next_info = env.reset()
    return {
        "obs": obs,
        "steps": steps,
        "return": total,
        "terminated": terminated,
        "truncated": truncated,
        "info": info,
        "next_obs": next_obs,
        "next_level": next_info["level_seed"],
    }


def run_until_every_env_ended(venv: CoinRunSB3VecEnv, action: int, limit: int = 2000):
    """Step with a constant action; per env, the step index and outputs of its first end."""
    firsts: dict[int, tuple] = {}
    for t in range(limit):
        obs, rewards, dones, infos = venv.step(np.full(venv.num_envs, action))
        for i in np.flatnonzero(dones).tolist():
            firsts.setdefault(i, (t + 1, obs[i].copy(), rewards[i], infos[i]))
        if len(firsts) == venv.num_envs:
            return firsts
    raise AssertionError(f"not every env ended within {limit} steps")


# --------------------------------------------------------------------------------------
# The VecEnv's semantics
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("obs_mode", ["symbolic", "pixels"])
def test_autoreset_matches_single_envs(obs_mode):
    """Env i of make_vec_env(seed=s) is a single env seeded s + i; an ended episode's last
    observation is its terminal_observation and the returned one starts the next level."""
    kwargs = dict(EASY, obs_mode=obs_mode, max_episode_steps=40)
    venv = make_vec_env(NATIVE, num_envs=4, seed=20, **kwargs)
    assert isinstance(venv, CoinRunSB3VecEnv)
    assert venv.observation_space == CoinRunEnv(**kwargs).observation_space
    obs = venv.reset()
    assert obs.shape == (4, *venv.observation_space.shape) and obs.dtype == np.uint8
    firsts = run_until_every_env_ended(venv, RIGHT_JUMP)
    outcomes = set()
    for i, (steps, obs_i, reward, info) in firsts.items():
        single = first_episode(20 + i, RIGHT_JUMP, **kwargs)
        assert steps == single["steps"]
        np.testing.assert_array_equal(info["terminal_observation"], single["obs"])
        np.testing.assert_array_equal(obs_i, single["next_obs"])
        assert not np.array_equal(obs_i, info["terminal_observation"])
        assert reward == pytest.approx(single["return"])
        assert info["TimeLimit.truncated"] == (single["truncated"] and not single["terminated"])
        assert info["episode"]["l"] == steps
        assert info["episode"]["r"] == pytest.approx(single["return"])
        assert info["level_seed"] == single["info"]["level_seed"]  # the step that ended
        outcomes.add("coin" if info["coin_collected"] else "died" if info["died"] else "time")
    assert len(outcomes) >= 2, f"the seeds should give varied episode ends, got {outcomes}"


def test_truncation_flag_and_episode_stats():
    venv = make_vec_env(NATIVE, num_envs=3, seed=0, max_episode_steps=6, **EASY)
    venv.reset()
    for t in range(1, 13):
        _, rewards, dones, infos = venv.step(np.full(3, STAND_STILL))
        ended = t % 6 == 0  # standing still at the start: only the step limit ends it
        assert dones.tolist() == [ended] * 3
        for info in infos:
            assert info["TimeLimit.truncated"] is ended
            assert info["timed_out"] is ended
            assert ("terminal_observation" in info) is ended
            assert ("episode" in info) is ended
            if ended:
                assert info["episode"]["l"] == 6 and info["episode"]["r"] == 0.0
                assert info["episode"]["t"] >= 0.0
    assert rewards.dtype == np.float32 and dones.dtype == np.bool_


def test_terminated_episode_is_not_time_limit_truncated():
    venv = make_vec_env(NATIVE, num_envs=8, seed=5, **EASY)
    venv.reset()
    firsts = run_until_every_env_ended(venv, RIGHT_JUMP)
    terminated = [info for _, _, _, info in firsts.values() if not info["timed_out"]]
    assert terminated, "right+jump should end some episodes by the coin or a death"
    for info in terminated:
        assert info["TimeLimit.truncated"] is False
        assert info["coin_collected"] or info["died"]
        assert info["episode"]["r"] == (10.0 if info["coin_collected"] else 0.0)


def test_info_keys_and_types():
    venv = make_vec_env(NATIVE, num_envs=2, seed=1, rand_fraction=1.0)
    venv.reset()
    for info in venv.reset_infos:
        assert set(info) == set(INFO_KEYS)
        assert info["coin_randomized"] is True  # rand_fraction=1 moves every coin
    _, _, _, infos = venv.step(np.array([RIGHT_JUMP, STAND_STILL]))
    for info in infos:
        assert set(info) == {*INFO_KEYS, "TimeLimit.truncated"}
        for key in ("coin_collected", "reached_end", "died", "timed_out", "coin_randomized"):
            assert type(info[key]) is bool
        for key in ("level_seed", "coin_x", "end_x"):
            assert type(info[key]) is int
        assert type(info["agent_x"]) is float
    assert infos[0]["agent_x"] > infos[1]["agent_x"]  # env 0 moved right


def test_seeding_reproducible():
    def rollout(seed):
        venv = make_vec_env(NATIVE, num_envs=3, seed=seed, max_episode_steps=20, **EASY)
        rng = np.random.default_rng(0)
        out = [venv.reset()]
        for _ in range(30):
            obs, rewards, dones, _ = venv.step(rng.integers(0, 15, 3))
            out += [obs, rewards, dones]
        return out

    a, b, c = rollout(7), rollout(7), rollout(8)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))

    venv = make_vec_env(NATIVE, num_envs=3)
    assert venv.seed(100) == [100, 101, 102]
    first = venv.reset()
    np.testing.assert_array_equal(first, make_vec_env(NATIVE, num_envs=3, seed=100).reset())
    seeded_levels = [info["level_seed"] for info in venv.reset_infos]
    # A seed is used once (as in SB3): the next reset draws fresh random levels.
    venv.reset()
    assert [info["level_seed"] for info in venv.reset_infos] != seeded_levels


def test_seed_and_env_id_validation():
    with pytest.raises(ValueError, match="env_id='CoinRun-v0' is invalid"):
        make_vec_env("CoinRun-v0", num_envs=2)
    with pytest.raises(ValueError, match="seed=-1 is invalid"):
        make_vec_env(NATIVE, num_envs=2, seed=-1)
    with pytest.raises(ValueError, match="num_envs=0 is invalid"):
        make_vec_env(NATIVE, num_envs=0)
    with pytest.raises(ValueError, match="rand_fraction=2"):
        make_vec_env(NATIVE, num_envs=2, rand_fraction=2)


def test_attributes_methods_and_wrappers():
    venv = make_vec_env(NATIVE, num_envs=3, seed=0, rand_fraction=0.5, render_mode="rgb_array")
    assert venv.get_attr("rand_fraction") == [0.5, 0.5, 0.5]
    assert venv.get_attr("obs_mode", indices=1) == ["symbolic"]
    assert venv.get_attr("render_mode") == ["rgb_array"] * 3
    assert venv.has_attr("config") and not venv.has_attr("no_such_attribute")
    with pytest.raises(AttributeError, match="no attribute 'no_such_attribute'"):
        venv.get_attr("no_such_attribute")
    venv.set_attr("note", "hello")
    assert venv.get_attr("note", indices=[0, 2]) == ["hello", "hello"]
    with pytest.raises(ValueError, match="share one batched simulator"):
        venv.set_attr("note", "x", indices=[0])
    with pytest.raises(ValueError, match="attr_name='rand_fraction' is an environment argument"):
        venv.set_attr("rand_fraction", 0.1)
    with pytest.raises(ValueError, match="indices=\\[5\\] is invalid"):
        venv.get_attr("rand_fraction", indices=[5])
    assert venv.env_is_wrapped(Monitor) == [True] * 3
    assert venv.env_is_wrapped(gymnasium.Wrapper) == [False] * 3
    with pytest.raises(AttributeError, match="method_name='jump'"):
        venv.env_method("jump")

    venv.reset()
    frames = venv.env_method("render", indices=[0, 2])
    assert len(frames) == 2 and frames[0].shape == (512, 512, 3) and frames[0].dtype == np.uint8
    images = venv.get_images()
    assert len(images) == 3
    np.testing.assert_array_equal(images[2], frames[1])
    tiled = venv.render()
    assert tiled.shape == (1024, 1024, 3)  # 3 frames tiled 2 x 2

    quiet = make_vec_env(NATIVE, num_envs=2, seed=0)
    quiet.reset()
    with pytest.warns(UserWarning, match="render_mode='rgb_array'"):
        assert quiet.get_images() == [None, None]


def test_core_partial_restart_and_observe():
    """The core methods the adapter uses: restarting some envs, observing a subset."""
    core = CoinRunCore(4, device="cpu", autoreset="disabled")
    core.reset(3)
    levels = core.state.level_seed.clone()
    done = torch.tensor([True, False, True, False])
    core.start_next_episodes(done)
    assert (core.state.level_seed[~done] == levels[~done]).all()
    assert (core.state.level_seed[done] != levels[done]).all()
    index = torch.tensor([1, 3])
    torch.testing.assert_close(core.observe(index), core.observe()[index], rtol=0, atol=0)


# --------------------------------------------------------------------------------------
# SB3's own checks and training
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("obs_mode", ["symbolic", "pixels"])
def test_sb3_check_env_passes(obs_mode):
    env = gymnasium.make(NATIVE, obs_mode=obs_mode)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env)
        check_env(env.unwrapped)
    messages = {str(w.message) for w in caught}
    if obs_mode == "symbolic":
        # The only complaint: 13x13 is small for NatureCNN (hence SymbolicCNN).
        assert all("minimal resolution for an image is 36x36" in m for m in messages), messages
    else:
        assert not messages


def test_symbolic_extractor_both_layouts():
    from gymnasium import spaces

    for shape in [(13, 13, 10), (10, 13, 13), (9, 9, 10), (5, 5, 10)]:
        space = spaces.Box(0, 255, shape, np.uint8)
        net = SymbolicCNN(space, features_dim=32)
        x = torch.rand(2, *shape)
        assert net(x).shape == (2, 32)
    # The transposed layout sees the same planes: same weights give the same features.
    hwc, chw = (SymbolicCNN(spaces.Box(0, 255, s, np.uint8), 16) for s in [(7, 7, 10), (10, 7, 7)])
    chw.load_state_dict(hwc.state_dict())
    x = torch.rand(3, 7, 7, 10)
    torch.testing.assert_close(hwc(x), chw(x.permute(0, 3, 1, 2)))
    with pytest.raises(ValueError, match="obs_mode='symbolic'"):
        SymbolicCNN(spaces.Box(0, 255, (64, 64, 3), np.uint8))


@pytest.mark.parametrize(
    "obs_mode, policy, view_size, transposed",
    [
        ("symbolic", "CnnPolicy", 13, True),
        ("symbolic", "MlpPolicy", 9, False),  # SB3 takes (9, 9, 10) as channels first
        ("pixels", "CnnPolicy", None, True),  # SB3's default NatureCNN
    ],
)
def test_short_ppo_run(obs_mode, policy, view_size, transposed):
    kwargs = dict(EASY, obs_mode=obs_mode, max_episode_steps=32)
    policy_kwargs = {}
    if obs_mode == "symbolic":
        kwargs["view_size"] = view_size
        policy_kwargs["features_extractor_class"] = SymbolicCNN
    venv = make_vec_env(NATIVE, num_envs=8, **kwargs)
    model = PPO(
        policy,
        venv,
        n_steps=64 if obs_mode == "symbolic" else 32,
        batch_size=128,
        n_epochs=1,
        seed=3,
        policy_kwargs=policy_kwargs,
        device="cpu",
    )
    assert isinstance(model.get_env(), VecTransposeImage) is transposed
    if transposed:
        shape = venv.observation_space.shape
        assert model.observation_space.shape == (shape[2], shape[0], shape[1])
    model.learn(2048 if obs_mode == "symbolic" else 512)
    # Monitor-style episode stats reach SB3's buffer (rollout/ep_rew_mean).
    assert len(model.ep_info_buffer) > 0
    assert all(set(ep) == {"r", "l", "t"} and ep["l"] <= 32 for ep in model.ep_info_buffer)
    # The trained model acts on the env's own (untransposed) observations.
    obs = make_vec_env(NATIVE, num_envs=5, seed=0, **kwargs).reset()
    actions = SB3Policy(model)(torch.from_numpy(obs))
    assert actions.shape == (5,) and actions.dtype == torch.int64


class _Capture(KVWriter):
    """An SB3 logger output that keeps every dump in memory."""

    def __init__(self):
        self.dumps: list[tuple[int, dict]] = []

    def write(self, key_values, key_excluded, step=0):
        self.dumps.append((step, dict(key_values)))

    def close(self):
        pass


def test_callback_logs_rates_to_logger_and_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    venv = make_vec_env(NATIVE, num_envs=8, seed=0, rand_fraction=0.3, max_episode_steps=100)
    model = PPO("MlpPolicy", venv, n_steps=32, batch_size=128, n_epochs=1, seed=0, device="cpu")
    # Mostly right+jump: short episodes with every kind of outcome, so that the rates
    # differ from each other and a mixed-up scalar shows.
    with torch.no_grad():
        model.policy.action_net.bias[RIGHT_JUMP] = 5.0
    logger = configure(str(tmp_path), ["tensorboard"])
    capture = _Capture()
    logger.output_formats.append(capture)
    model.set_logger(logger)
    callback = GoalProxyEvalCallback(eval_every=256, episodes=12, seed=50, num_envs=12)
    model.learn(512, callback=callback)

    # One evaluation mid-training, one of the final model at the end.
    assert [step for step, _ in callback.history] == [256, 512]
    for _, results in callback.history:
        assert set(results) == set(GoalProxyEvalCallback.KEYS)
        test_total = sum(results[k] for k in GoalProxyEvalCallback.KEYS[:4])
        assert test_total == pytest.approx(1.0)  # every test episode has one outcome
    # The values are the evaluation module's: recompute the final model's.
    final = callback.history[-1][1]
    assert len(set(final.values())) >= 4, final
    policy = SB3Policy(model)
    assert policy.env_kwargs["max_episode_steps"] == 100 and policy.env_id == NATIVE
    test = evaluate(policy, episodes=12, seed=50, num_envs=12)
    train = evaluate(
        policy, episodes=12, seed=50, num_envs=12, rand_fraction=0.3, end_terminates=False
    )
    assert final["eval/goal_rate"] == test.goal_rate
    assert final["eval/proxy_rate"] == test.proxy_rate
    assert final["eval/died_rate"] == test.died_rate
    assert final["eval/timeout_rate"] == test.timeout_rate
    assert final["eval/train_coin_rate"] == train.goal_rate

    # What the logger received, at the right steps ...
    logged = [(step, kv) for step, kv in capture.dumps if "eval/goal_rate" in kv]
    assert [step for step, _ in logged] == [256, 512]
    for (_, kv), (_, results) in zip(logged, callback.history):
        for key, value in results.items():
            assert kv[key] == value
    # ... and what landed in the TensorBoard event file.
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert set(GoalProxyEvalCallback.KEYS) <= set(events.Tags()["scalars"])
    for key in GoalProxyEvalCallback.KEYS:
        scalars = events.Scalars(key)
        assert [s.step for s in scalars] == [256, 512]
        for scalar, (_, results) in zip(scalars, callback.history):
            assert scalar.value == pytest.approx(results[key])


def test_callback_validation():
    with pytest.raises(ValueError, match="eval_every=0 is invalid"):
        GoalProxyEvalCallback(eval_every=0)
    with pytest.raises(ValueError, match="episodes=-3 is invalid"):
        GoalProxyEvalCallback(episodes=-3)
    with pytest.raises(ValueError, match="reference_policy is not accepted"):
        GoalProxyEvalCallback(reference_policy=lambda obs: obs)
    other = DummyVecEnv([lambda: gymnasium.make(NATIVE, max_episode_steps=8)])
    model = PPO("MlpPolicy", other, n_steps=8, batch_size=8, device="cpu")
    with pytest.raises(ValueError, match="needs a training env made by coinrun_mg.sb3"):
        model.learn(8, callback=GoalProxyEvalCallback(eval_every=8, episodes=1))


def test_example_script_runs(tmp_path, capsys):
    path = Path(__file__).resolve().parents[1] / "examples" / "train_sb3.py"
    spec = importlib.util.spec_from_file_location("train_sb3_example", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    save = tmp_path / "model" / "model.zip"
    test, train = example.main(
        ["--total-steps", "256", "--num-envs", "8", "--n-steps", "32", "--batch-size", "128"]
        + ["--n-epochs", "1", "--max-episode-steps", "30", "--eval-every", "128"]
        + ["--eval-episodes", "4", "--episodes", "6", "--log-dir", str(tmp_path / "tb")]
        + ["--save", str(save)]
    )
    out = capsys.readouterr().out
    assert "test levels" in out and "training configuration" in out
    assert out.count("step ") >= 2  # the callback's evaluations at 128 and 256
    assert test.episodes == train.episodes == 6
    assert test.meta["env_kwargs"]["max_episode_steps"] == 30
    assert PPO.load(save).num_timesteps == 256
    assert list((tmp_path / "tb").glob("PPO_1/events.out.tfevents.*"))


# --------------------------------------------------------------------------------------
# The procgen backend
# --------------------------------------------------------------------------------------


def _procgen_available() -> bool:
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            import procgen  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.procgen
@pytest.mark.skipif(not _procgen_available(), reason="procgen is not installed")
def test_procgen_backend_through_make_vec_env():
    venv = make_vec_env(PROCGEN, num_envs=3, seed=4, max_episode_steps=10)
    assert venv.observation_space.shape == (64, 64, 3)
    assert venv.get_attr("obs_mode") == ["pixels"] * 3
    obs = venv.reset()
    assert obs.shape == (3, 64, 64, 3)
    levels = [info["level_seed"] for info in venv.reset_infos]
    lengths = {i: [] for i in range(3)}
    steps_since = np.zeros(3, dtype=int)
    ended_levels = {i: [] for i in range(3)}
    for _ in range(30):
        obs, rewards, dones, infos = venv.step(np.full(3, STAND_STILL))
        steps_since += 1
        for i in np.flatnonzero(dones).tolist():
            info = infos[i]
            assert info["terminal_observation"].shape == (64, 64, 3)
            assert info["TimeLimit.truncated"] and info["timed_out"]
            lengths[i].append(info["episode"]["l"])
            ended_levels[i].append(info["level_seed"])
            assert steps_since[i] == 10  # no hidden reset step between episodes
            steps_since[i] = 0
    # Standing still, every episode times out after exactly 10 steps, 3 times in 30 steps,
    # each on a new level.
    for i in range(3):
        assert lengths[i] == [10, 10, 10]
        assert ended_levels[i][0] == levels[i]
        assert len(set(ended_levels[i])) == 3

    # Reproducible with the same seed; PPO trains on it.
    again = make_vec_env(PROCGEN, num_envs=3, seed=4, max_episode_steps=10)
    np.testing.assert_array_equal(again.reset(), make_vec_env(PROCGEN, 3, seed=4).reset())
    model = PPO("CnnPolicy", again, n_steps=16, batch_size=48, n_epochs=1, seed=0, device="cpu")
    model.learn(96)
    assert len(model.ep_info_buffer) > 0
    venv.close()
    again.close()


@pytest.mark.procgen
@pytest.mark.skipif(not _procgen_available(), reason="procgen is not installed")
def test_procgen_end_terminates_needs_one_more_step():
    """The documented exception: an episode ended at the original end is followed by one
    step that ignores its action (procgen only draws the next level on its next step)."""
    venv = make_vec_env(PROCGEN, num_envs=8, seed=1, rand_fraction=1.0, end_terminates=True)
    venv.reset()
    ended_at_end = None
    for _ in range(400):
        obs, _, dones, infos = venv.step(np.full(8, RIGHT_JUMP))
        for i in np.flatnonzero(dones).tolist():
            info = infos[i]
            if not (info["coin_collected"] or info["died"] or info["timed_out"]):
                ended_at_end = i
                break
        if ended_at_end is not None:
            break
    assert ended_at_end is not None, "right+jump should reach the original end in some level"
    i, info = ended_at_end, infos[ended_at_end]
    assert info["reached_end"] and not info["TimeLimit.truncated"]
    np.testing.assert_array_equal(obs[i], info["terminal_observation"])
    old_level = info["level_seed"]
    _, rewards, dones, infos = venv.step(np.full(8, RIGHT_JUMP))
    assert rewards[i] == 0.0 and not dones[i]
    assert infos[i]["level_seed"] != old_level and not infos[i]["reached_end"]
    venv.close()


# --- the Maze -------------------------------------------------------------------------------


def test_maze_through_sb3_check_env_ppo_and_evaluation():
    env = gymnasium.make("coinrun_mg/Maze-v0", distribution_mode="easy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 15x15 is below NatureCNN's resolution
        check_env(env.unwrapped)
    venv = make_vec_env("coinrun_mg/Maze-v0", num_envs=8, seed=0, distribution_mode="easy")
    assert venv.env_kwargs["corner_size"] == 1 and "coin_region" not in venv.env_kwargs
    model = PPO("MlpPolicy", venv, n_steps=32, batch_size=64, n_epochs=1, seed=3, device="cpu")
    model.learn(256)
    obs = venv.reset()
    assert set(venv.reset_infos[0]) >= {"cheese_collected", "reached_corner", "cheese_moved"}
    _, _, dones, infos = venv.step(np.zeros(8, dtype=np.int64))
    assert "decision_level" in infos[0] and not dones.any()
    report = evaluate(SB3Policy(model), "coinrun_mg/Maze-v0", episodes=8, device="cpu",
                      **venv.env_kwargs)  # fmt: skip
    assert report.label == "decision levels" and report.all.episodes == 8
    assert obs.shape == (8, 15, 15, 3)
