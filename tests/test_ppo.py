"""PPO: GAE, config validation, networks, learning, checkpoints and exact resume, CLI, the
Gymnasium vector-env adapter.  Kept small: the whole file runs in well under 90 s on two
busy CPU cores (most of it is the learning test)."""

from __future__ import annotations

import json
import math
import shutil

import gymnasium
import numpy as np
import pytest
import torch

import coinrun_mg  # noqa: F401 - registers the env ids
from coinrun_mg import cli
from coinrun_mg.agents import (
    Agent,
    PPOConfig,
    TrainingHook,
    VecEnvAdapter,
    compute_gae,
    first_episode_stats,
    load_policy,
    train,
)
from coinrun_mg.agents.checkpoint import CheckpointError
from coinrun_mg.agents.ppo import CHECKPOINT_NAME, RewardNormalizer, read_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_config(**overrides) -> PPOConfig:
    """A run of a few seconds: 16 envs x 16 steps per iteration, short episodes."""
    settings = dict(
        device="cpu",
        num_envs=16,
        num_steps=16,
        minibatch_size=64,
        total_steps=4 * 256,
        max_episode_steps=20,  # episodes end (and envs reset) inside every rollout
        rand_fraction=0.5,
        checkpoint_every=0,
        progress_bar=False,
    )
    settings.update(overrides)
    return PPOConfig.from_profile("quick", **settings)


# --- GAE ------------------------------------------------------------------------------


def test_gae_matches_a_hand_computation_with_dones_and_bootstrap():
    gamma, lam = 0.9, 0.5
    # Two envs, three steps.  Env 0 ends its episode at step 1; env 1 never ends.
    rewards = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0]])
    values = torch.tensor([[0.5, 1.0], [0.2, 1.5], [0.4, 2.0]])
    dones = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    next_value = torch.tensor([0.7, 2.5])
    adv, ret = compute_gae(rewards, values, dones, next_value, gamma, lam)

    # Env 0: step 2 bootstraps from next_value; step 1 ends the episode (no bootstrap);
    # step 0 bootstraps from V(s1) and chains step 1's advantage.
    d2 = 0.0 + gamma * 0.7 - 0.4
    d1 = 2.0 - 0.2
    d0 = 1.0 + gamma * 0.2 - 0.5
    env0 = [d0 + gamma * lam * d1, d1, d2]
    # Env 1: no episode end, one chain.
    e2 = 3.0 + gamma * 2.5 - 2.0
    e1 = 0.0 + gamma * 2.0 - 1.5
    e0 = 0.0 + gamma * 1.5 - 1.0
    a2 = e2
    a1 = e1 + gamma * lam * a2
    a0 = e0 + gamma * lam * a1
    expected = torch.tensor([[env0[0], a0], [env0[1], a1], [env0[2], a2]])
    torch.testing.assert_close(adv, expected)
    torch.testing.assert_close(ret, expected + values)


def test_reward_normalizer_divides_by_the_running_std_of_discounted_returns():
    norm = RewardNormalizer(num_envs=2, gamma=0.5, clip=10.0, device=torch.device("cpu"))
    rewards = [torch.tensor([1.0, 0.0]), torch.tensor([1.0, 2.0]), torch.tensor([0.0, 2.0])]
    dones = [torch.tensor([False, False]), torch.tensor([True, False]), torch.tensor([False, True])]
    seen, ret, out = [], np.zeros(2), []
    for r, d in zip(rewards, dones):
        out.append(norm(r, d))
        ret = ret * 0.5 + r.numpy()
        seen.extend(ret)
        ret[d.numpy()] = 0.0
        # Reference: the variance of every discounted return seen so far (the tiny
        # initial pseudo-count of the running estimate aside).
        torch.testing.assert_close(out[-1], r / math.sqrt(np.var(seen) + 1e-8), rtol=1e-3, atol=0)


# --- config -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"minibatch_size": 1000}, ["minibatch_size=1000", "num_envs * num_steps", "32768"]),
        ({"learning_rate": -1e-4}, ["learning_rate=-0.0001", "> 0"]),
        ({"gamma": 1.5}, ["gamma=1.5", "[0, 1]"]),
        ({"num_envs": 0}, ["num_envs=0", ">= 1"]),
        ({"update_epochs": 2.5}, ["update_epochs=2.5", "int"]),
        ({"obs_mode": "rgb"}, ["obs_mode='rgb'", "symbolic", "pixels"]),
        ({"network": "resnet"}, ["network='resnet'", "impala", "compact"]),
        ({"rand_fraction": 2.0}, ["rand_fraction=2.0", "[0, 1]"]),
        ({"device": "gpu"}, ["device='gpu'", "cuda"]),
        ({"compile_env": "yes"}, ["compile_env='yes'", "'auto', 'on', 'off'"]),
        ({"norm_reward": "yes"}, ["norm_reward='yes'", "True or False"]),
        ({"coin_region": (0.9, 0.1)}, ["coin_region", "lo < hi"]),
        ({"batch_size": 4}, ["batch_size", "accepted fields"]),
    ],
)
def test_bad_config_values_raise_value_errors_naming_field_and_value(overrides, words):
    with pytest.raises(ValueError) as excinfo:
        PPOConfig.from_profile("quick", **overrides)
    for word in words:
        assert word in str(excinfo.value)


def test_numpy_numbers_in_a_config_serialize_as_python_numbers():
    config = PPOConfig.from_profile(
        "quick",
        rand_fraction=np.float32(0.5),
        num_envs=np.int64(64),
        learning_rate=np.float32(0.25),
        seed=np.uint8(3),
        coin_region=(np.float32(0.5), 1),
    )
    saved = json.loads(json.dumps(config.to_dict()))  # numpy scalars would not serialize
    assert (saved["rand_fraction"], saved["num_envs"], saved["learning_rate"]) == (0.5, 64, 0.25)
    assert (saved["seed"], saved["coin_region"]) == (3, [0.5, 1.0])
    assert PPOConfig.from_dict(saved) == config
    with pytest.raises(ValueError, match="num_envs=64.0 is invalid; it must be an int"):
        PPOConfig.from_profile("quick", num_envs=np.float64(64))


def test_profiles_and_serialization():
    with pytest.raises(ValueError, match=r"profile='fast'.*\('paper', 'quick'\)"):
        PPOConfig.from_profile("fast")
    paper = PPOConfig.from_profile("paper")
    assert paper == PPOConfig(obs_mode="pixels")  # env fields default to CoinRunConfig's
    assert (paper.learning_rate, paper.gamma, paper.num_steps, paper.minibatch_size) == (
        5e-4,
        0.999,
        256,
        8192,
    )
    assert (paper.obs_mode, paper.network, paper.distribution_mode) == ("pixels", "impala", "hard")
    quick = PPOConfig.from_profile("quick", rand_fraction=0.02)
    assert (quick.obs_mode, quick.network, quick.num_minibatches) == ("symbolic", "mlp", 16)
    assert PPOConfig.from_dict(json.loads(json.dumps(quick.to_dict()))) == quick


# --- networks -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("network", "shape"),
    [
        ("impala", (64, 64, 3)),
        ("compact", (13, 13, 10)),
        ("mlp", (13, 13, 10)),
        ("grid", (13, 13, 10)),
        ("grid", (29, 29, 3)),
        ("mlp", (29, 29, 3)),
    ],
)
def test_agent_takes_uint8_hwc_observations(network, shape):
    torch.manual_seed(0)
    agent = Agent(shape, 15, network)
    obs = torch.randint(0, 256, (3, *shape), dtype=torch.uint8)
    action, log_prob, entropy, value = agent.get_action_and_value(obs)
    assert action.shape == log_prob.shape == entropy.shape == value.shape == (3,)
    assert action.dtype == torch.int64
    # Policy head gain 0.01: the initial policy is close to uniform.
    assert torch.allclose(entropy, torch.full((3,), math.log(15)), atol=1e-2)
    _, log_prob_again, _, _ = agent.get_action_and_value(obs, action)
    torch.testing.assert_close(log_prob, log_prob_again)


# --- learning -----------------------------------------------------------------------------


def test_ppo_learns_to_reach_the_coin_on_a_short_level(tmp_path):
    # The smallest convincing setting found on a busy 2-core CPU: one short easy level
    # (coin 7 tiles to the right, no danger), 200-step episodes.  The uniform random policy
    # reaches the coin in about 13% of episodes; the quick profile (MLP trunk) gets to ~80%
    # after 16k steps (about 10 s; the compact CNN: ~65-85%).
    config = tiny_config(
        num_envs=64,
        num_steps=64,
        minibatch_size=512,
        total_steps=16_384,
        num_levels=1,
        start_level=5,
        max_episode_steps=200,
        rand_fraction=0.0,
    )
    result = train(config, tmp_path / "run")
    policy = load_policy(result.checkpoint, device="cpu")
    torch.manual_seed(0)
    trained = first_episode_stats(policy, config.env_kwargs(), num_envs=64)
    rng = torch.Generator().manual_seed(0)

    def random_policy(obs):
        return torch.randint(0, 15, (obs.shape[0],), generator=rng)

    chance = first_episode_stats(random_policy, config.env_kwargs(), num_envs=64)
    assert chance["coin_rate"] < 0.3
    assert trained["coin_rate"] > chance["coin_rate"] + 0.3, (trained, chance)
    assert trained["episode_length"] < chance["episode_length"]


# --- checkpoints, exact resume, hooks -------------------------------------------------


class _Killed(Exception):
    pass


class KillAt(TrainingHook):
    """Stands in for a kill: raises before the iteration's checkpoint is written."""

    def __init__(self, step: int):
        self.every_steps = step

    def __call__(self, step, policy, writer):
        raise _Killed(step)


class RecordingHook(TrainingHook):
    every_steps = 512

    def __init__(self):
        self.calls = []

    def __call__(self, step, policy, writer):
        obs = torch.zeros((2, *policy.obs_shape), dtype=torch.uint8)
        actions = policy(obs)
        assert actions.shape == (2,) and actions.dtype == torch.int64
        self.calls.append(step)
        return {"eval/fake_score": float(step)}


def test_resumed_run_ends_with_bit_identical_weights(tmp_path):
    config = tiny_config(checkpoint_every=512)  # 4 iterations of 256 steps
    recorder = RecordingHook()
    uninterrupted = train(config, tmp_path / "a", hooks=[recorder])
    assert recorder.calls == [512, 1024]
    assert uninterrupted.stats["eval/fake_score"] == 1024.0
    assert uninterrupted.global_step == 1024

    with pytest.raises(_Killed):
        train(config, tmp_path / "b", hooks=[KillAt(768)])  # dies in iteration 3
    killed = read_checkpoint(tmp_path / "b" / CHECKPOINT_NAME)
    assert (killed["iteration"], killed["global_step"]) == (2, 512)

    resumed = train(config, tmp_path / "b", resume=True)
    assert resumed.global_step == 1024
    a, b = uninterrupted.agent.state_dict(), resumed.agent.state_dict()
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    first = read_checkpoint(tmp_path / "a" / CHECKPOINT_NAME)
    last = read_checkpoint(tmp_path / "b" / CHECKPOINT_NAME)
    for key in ("ret", "var", "count"):
        assert torch.equal(first["reward_normalizer"][key], last["reward_normalizer"][key])
    for key in first["env"]["state"]:
        assert torch.equal(first["env"]["state"][key], last["env"]["state"][key]), key
    moments = zip(first["optimizer"]["state"].values(), last["optimizer"]["state"].values())
    for sa, sb in moments:
        assert torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])
    # Training changed the weights (the comparison is not between two untrained nets).
    killed_actor = killed["model"]["actor.weight"]
    assert not torch.equal(killed_actor, b["actor.weight"])
    # Atomic writes leave no temporary files behind.
    assert not [p for p in (tmp_path / "b").iterdir() if p.name.endswith(".tmp")]

    # Training seconds add up over the processes that trained the kept run; a run resumed
    # with nothing left to train reports the seconds its checkpoint holds.
    assert resumed.train_seconds > killed["elapsed_s"] > 0
    assert last["elapsed_s"] == pytest.approx(resumed.train_seconds, abs=0.5)
    again = train(config, tmp_path / "b", resume=True)
    assert again.train_seconds == last["elapsed_s"]


def test_a_damaged_checkpoint_is_replaced_by_a_kept_one_and_resumed_exactly(tmp_path):
    # The recovery docs/usage.md gives for a damaged checkpoint.pt of a run that keeps its
    # periodic checkpoints: copy an earlier one over it and resume.
    config = tiny_config(checkpoint_every=256, keep_checkpoints=True)
    uninterrupted = train(config, tmp_path / "run")
    kept = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert kept == [f"step_{n:012d}.pt" for n in (256, 512, 768)]  # periodic ones
    latest = tmp_path / "run" / CHECKPOINT_NAME
    latest.write_bytes(latest.read_bytes()[:5000])  # cut short
    with pytest.raises(CheckpointError, match=f"{latest}.*(truncated|damaged)"):
        train(config, tmp_path / "run", resume=True)

    shutil.copyfile(tmp_path / "run" / "checkpoints" / kept[1], latest)  # step 512
    resumed = train(config, tmp_path / "run", resume=True)
    assert resumed.global_step == 1024
    a, b = uninterrupted.agent.state_dict(), resumed.agent.state_dict()
    assert all(torch.equal(a[name], b[name]) for name in a)


def test_checkpoint_round_trip_policy_and_mismatch_errors(tmp_path):
    config = tiny_config(total_steps=256)
    result = train(config, tmp_path / "run")
    data = torch.load(result.checkpoint, weights_only=True)  # plain tensors and primitives
    assert data["config"] == config.to_dict()
    assert data["env_spec"]["obs_shape"] == [13, 13, 10]

    greedy = load_policy(result.checkpoint, device="cpu", deterministic=True)
    assert greedy.config == config and greedy.env_kwargs == config.env_kwargs()
    obs = torch.randint(0, 256, (5, 13, 13, 10), dtype=torch.uint8)
    with torch.no_grad():
        expected = result.agent(obs)[0].argmax(-1)
    assert torch.equal(greedy(obs), expected)
    assert isinstance(greedy(obs.numpy()), np.ndarray)
    sampled = load_policy(tmp_path / "run", device="cpu")  # a run directory works too
    assert sampled(obs).shape == (5,)

    with pytest.raises(ValueError, match="obs_mode='symbolic'.*'pixels' was asked for"):
        load_policy(result.checkpoint, device="cpu", obs_mode="pixels")
    with pytest.raises(ValueError, match=r"shape \(5, 64, 64, 3\).*symbolic"):
        greedy(torch.zeros((5, 64, 64, 3), dtype=torch.uint8))
    with pytest.raises(ValueError, match="obs_mode: 'symbolic' in the run, 'pixels' asked"):
        train(config.replace(obs_mode="pixels"), tmp_path / "run", resume=True)
    with pytest.raises(ValueError, match="not a coinrun-mg PPO checkpoint"):
        torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
        load_policy(tmp_path / "other.pt", device="cpu")


# --- CLI ------------------------------------------------------------------------------------


def test_cli_train_writes_checkpoint_config_and_tensorboard_events(tmp_path, capsys):
    run_dir = tmp_path / "cli-run"
    args = ["train", "--profile", "quick", "--total-steps", "64", "--seed", "3"]
    args += ["--device", "cpu", "--run-dir", str(run_dir), "--num-envs", "8", "--num-steps"]
    args += ["8", "--minibatch-size", "16", "--rand-fraction", "0.02", "--no-progress"]
    assert cli.main(args) == 0
    assert (run_dir / CHECKPOINT_NAME).exists()
    assert list(run_dir.glob("events.out.tfevents.*"))
    saved = json.loads((run_dir / "config.json").read_text())
    assert (saved["seed"], saved["rand_fraction"], saved["obs_mode"]) == (3, 0.02, "symbolic")

    # --resume on a finished run: nothing left to do.
    assert cli.main(["train", "--run-dir", str(run_dir), "--resume", "--no-progress"]) == 0
    assert "already trained" in capsys.readouterr().out
    # Bad values: exit code 2 and the reason.
    assert cli.main(["train", "--profile", "quick", "--minibatch-size", "1000"]) == 2
    assert "minibatch_size=1000" in capsys.readouterr().err
    assert cli.main(["info"]) == 0


def test_cli_help_lists_generated_options(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    out = capsys.readouterr().out
    for option in ("--rand-fraction", "--coin-region LO HI", "--no-norm-reward", "--resume"):
        assert option in out
    assert "examples:" in out


# --- Gymnasium vector envs ------------------------------------------------------------------


def test_adapter_marks_next_step_reset_steps():
    vec = gymnasium.make_vec(
        "coinrun_mg/CoinRun-v0", num_envs=4, device="cpu", obs_mode="symbolic", max_episode_steps=5
    )
    env = VecEnvAdapter(vec)
    obs, info = env.reset(seed=0)
    assert obs.shape == (4, 13, 13, 10) and obs.dtype == torch.uint8
    assert not info["reset_step"].any()
    done_before = torch.zeros(4, dtype=torch.bool)
    for _ in range(12):
        obs, reward, terminated, truncated, info = env.step(torch.ones(4, dtype=torch.int64))
        # The step after an episode end only starts the next episode.
        assert torch.equal(info["reset_step"], done_before)
        assert (reward[info["reset_step"]] == 0).all()
        done_before = terminated | truncated
    assert info["level_seed"].dtype == torch.int64
    env.close()


def test_training_through_a_gymnasium_vector_env(tmp_path):
    config = tiny_config(env_id="coinrun_mg/CoinRun-v0", total_steps=512)
    result = train(config, tmp_path / "run")
    assert result.global_step == 512
    assert math.isfinite(result.stats["losses/value_loss"])
    # Episodes of 20 steps were counted without their reset steps.
    assert result.stats["charts/episode_length"] <= 20


@pytest.mark.procgen
def test_training_on_the_procgen_backend(tmp_path):
    pytest.importorskip("procgen")
    config = PPOConfig.from_profile(
        "paper",
        env_id="coinrun_mg/ProcgenCoinRun-v0",
        device="cpu",
        num_envs=4,
        num_steps=8,
        minibatch_size=16,
        total_steps=32,
        progress_bar=False,
    )
    result = train(config, tmp_path / "run")
    assert result.global_step == 32
    policy = load_policy(result.checkpoint, device="cpu", env_id="coinrun_mg/ProcgenCoinRun-v0")
    assert policy(np.zeros((2, 64, 64, 3), dtype=np.uint8)).shape == (2,)
