"""PPO on the Maze: config, training on the native core, checkpoints, exact resume,
evaluation of a trained checkpoint, learning on a small task and the CLI."""

from __future__ import annotations

import json

import pytest
import torch

from coinrun_mg import MAZE_ENV_ID, cli
from coinrun_mg.agents import PPOConfig, first_episode_stats, load_policy, train
from coinrun_mg.agents.config import MAZE_ENV_FIELDS, MAZE_ENV_NAMES
from coinrun_mg.agents.ppo import CHECKPOINT_NAME, read_checkpoint
from coinrun_mg.eval import FilteredEvalReport, evaluate
from coinrun_mg.sweep import _same_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_maze(**overrides) -> PPOConfig:
    """A Maze run of a few seconds: 16 envs x 16 steps per iteration, short episodes."""
    settings = dict(
        game="maze",
        device="cpu",
        num_envs=16,
        num_steps=16,
        minibatch_size=64,
        total_steps=4 * 256,
        max_episode_steps=20,
        rand_fraction=0.5,
        checkpoint_every=0,
        progress_bar=False,
    )
    settings.update(overrides)
    return PPOConfig.from_profile("quick", **settings)


def test_maze_profile_and_env_kwargs():
    config = PPOConfig.from_profile("quick", game="maze")
    assert (config.game, config.obs_mode, config.network) == ("maze", "symbolic", "grid")
    assert config.maze_view_size == 29  # the easy world, centred on the agent
    assert config.max_episode_steps == 500  # procgen Maze's limit, not CoinRun's 1000
    assert tuple(config.env_kwargs()) == tuple(MAZE_ENV_NAMES.get(f, f) for f in MAZE_ENV_FIELDS)
    assert PPOConfig.from_profile("quick").max_episode_steps == 1000
    assert PPOConfig.from_profile("paper", game="maze").obs_mode == "pixels"
    assert PPOConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    "overrides, words",
    [
        ({"game": "pong"}, "game='pong'"),
        ({"corner_size": 0}, "corner_size=0"),
        (
            {"obs_mode": "pixels", "network": "mlp"},
            "network='mlp' is invalid with obs_mode='pixels'",
        ),
        ({"coin_placement": "anywhere"}, "coin_placement='anywhere' is invalid with game='maze'"),
        ({"view_size": 9}, "view_size=9 is invalid with game='maze': maze has no view_size"),
        ({"maze_view_size": 8}, "view_size=8 is invalid; it must be 0"),
        (
            {"env_id": "coinrun_mg/ProcgenCoinRun-v0"},
            "env_id='coinrun_mg/ProcgenCoinRun-v0' is invalid with game='maze'",
        ),
    ],
)
def test_bad_maze_settings_are_refused_naming_the_field(overrides, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(")):
        PPOConfig.from_profile("quick", **{"game": "maze", **overrides})


@pytest.mark.parametrize(
    "overrides, words",
    [
        ({"corner_size": 3}, "corner_size=3 is invalid with game='coinrun'"),
        ({"maze_view_size": 29}, "maze_view_size=29 is invalid with game='coinrun'"),
        ({"env_id": MAZE_ENV_ID}, "env_id='coinrun_mg/Maze-v0' is invalid with game='coinrun'"),
    ],
)
def test_maze_settings_on_a_coinrun_run_are_refused(overrides, words):
    with pytest.raises(ValueError, match=words):
        PPOConfig.from_profile("quick", **overrides)


def test_configs_saved_before_the_game_field_still_match():
    config = PPOConfig.from_profile("quick", rand_fraction=0.02)
    saved = {k: v for k, v in config.to_dict().items() if k not in ("game", "corner_size")}
    assert _same_config(saved, config)
    assert not _same_config({**saved, "rand_fraction": 0.2}, config)
    assert not _same_config({**saved, "no_such_field": 1}, config)


def test_maze_run_checkpoint_policy_and_evaluation(tmp_path):
    config = tiny_maze(total_steps=256, distribution_mode="easy")
    result = train(config, tmp_path / "run")
    data = read_checkpoint(result.checkpoint)
    assert data["env_spec"]["obs_shape"] == [29, 29, 3]  # the quick profile's agent-centred view
    assert data["config"]["game"] == "maze"
    policy = load_policy(result.checkpoint, device="cpu", game="maze")
    assert policy.env_id == MAZE_ENV_ID
    with pytest.raises(ValueError, match="game='maze'; game='coinrun' was asked for"):
        load_policy(result.checkpoint, device="cpu", game="coinrun")
    report = evaluate(result.checkpoint, episodes=8, device="cpu")
    assert isinstance(report, FilteredEvalReport) and report.all.episodes == 8
    assert report.all.meta["env_id"] == MAZE_ENV_ID
    with pytest.raises(ValueError, match="trained on 'coinrun_mg/Maze-v0' \\(maze\\)"):
        evaluate(result.checkpoint, "coinrun_mg/CoinRun-v0", episodes=2, device="cpu")


@pytest.mark.parametrize("network", ["mlp", "compact"])
def test_maze_run_on_the_agent_centred_view(tmp_path, network):
    config = tiny_maze(
        total_steps=256, distribution_mode="easy", maze_view_size=29, network=network
    )
    assert config.env_kwargs()["view_size"] == 29
    result = train(config, tmp_path / "run")
    assert read_checkpoint(result.checkpoint)["env_spec"]["obs_shape"] == [29, 29, 3]
    policy = load_policy(result.checkpoint, device="cpu", game="maze")
    assert policy.env_kwargs["view_size"] == 29
    stats = first_episode_stats(policy, policy.env_kwargs, 8, 1_000_000, "cpu", game="maze")
    assert 0.0 <= stats["coin_rate"] <= 1.0
    # A config saved before the field existed reads as the whole-world view.
    saved = {k: v for k, v in tiny_maze().to_dict().items() if k != "maze_view_size"}
    assert PPOConfig.from_dict(saved).env_kwargs()["view_size"] == 0


def test_grid_scale_widens_the_grid_cnn_in_training_and_loading(tmp_path):
    result = train(tiny_maze(total_steps=256, grid_scale=2), tmp_path / "run")
    weights = read_checkpoint(result.checkpoint)["model"]
    assert weights["trunk.conv0.weight"].shape[0] == 32  # 16 channels at scale 1
    assert weights["trunk.conv1.weight"].shape[0] == 64
    policy = load_policy(result.checkpoint, device="cpu", game="maze")
    assert policy.agent.trunk.conv1.out_channels == 64
    with pytest.raises(ValueError, match="grid_scale=0"):
        tiny_maze(grid_scale=0)


def test_resumed_maze_run_ends_with_bit_identical_weights(tmp_path):
    config = tiny_maze(checkpoint_every=512)
    uninterrupted = train(config, tmp_path / "a")

    class Killed(Exception):
        pass

    def kill_at_768(step, policy, writer):
        raise Killed(step)

    from coinrun_mg.agents import TrainingHook

    class KillAt(TrainingHook):
        every_steps = 768
        __call__ = staticmethod(kill_at_768)

    with pytest.raises(Killed):
        train(config, tmp_path / "b", hooks=[KillAt()])
    resumed = train(config, tmp_path / "b", resume=True)
    a, b = uninterrupted.agent.state_dict(), resumed.agent.state_dict()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    first = read_checkpoint(tmp_path / "a" / CHECKPOINT_NAME)
    last = read_checkpoint(tmp_path / "b" / CHECKPOINT_NAME)
    for key in first["env"]["state"]:
        assert torch.equal(first["env"]["state"][key], last["env"]["state"][key]), key


def test_ppo_learns_to_reach_the_cheese_on_one_small_maze(tmp_path):
    # One easy 5 x 5 maze (level seed 16) with the cheese in the corner, 100-step episodes:
    # the random policy gets there in about 12% of episodes; a short run learns the way.
    level = dict(num_levels=1, start_level=16, max_episode_steps=100, rand_fraction=0.0)
    config = tiny_maze(
        num_envs=64,
        num_steps=64,
        minibatch_size=512,
        total_steps=16_384,
        distribution_mode="easy",
        **level,
    )
    result = train(config, tmp_path / "run")
    policy = load_policy(result.checkpoint, device="cpu")
    torch.manual_seed(0)
    trained = first_episode_stats(policy, config.env_kwargs(), num_envs=64, game="maze")
    rng = torch.Generator().manual_seed(0)

    def random_policy(obs):
        return torch.randint(0, 15, (obs.shape[0],), generator=rng)

    chance = first_episode_stats(random_policy, config.env_kwargs(), num_envs=64, game="maze")
    assert chance["coin_rate"] < 0.3
    assert trained["coin_rate"] > chance["coin_rate"] + 0.3, (trained, chance)


def test_cli_trains_the_maze(tmp_path, capsys):
    run_dir = tmp_path / "maze-run"
    args = ["train", "--game", "maze", "--total-steps", "64", "--seed", "3", "--device"]
    args += ["cpu", "--run-dir", str(run_dir), "--num-envs", "8", "--num-steps", "8"]
    args += ["--minibatch-size", "16", "--no-progress"]
    assert cli.main(args) == 0
    saved = json.loads((run_dir / "config.json").read_text())
    assert (saved["game"], saved["distribution_mode"], saved["max_episode_steps"]) == (
        "maze",
        "easy",
        500,
    )
    with pytest.raises(SystemExit) as exit_info:  # argparse refuses the choice
        cli.main(["train", "--game", "chess", "--run-dir", str(tmp_path / "x")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--game: invalid choice: 'chess'" in err and "'maze'" in err


def test_cli_maze_runs_default_to_their_own_run_dir(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = ["train", "--game", "maze", "--total-steps", "64", "--seed", "2", "--device", "cpu"]
    args += ["--num-envs", "8", "--num-steps", "8", "--minibatch-size", "16", "--no-progress"]
    assert cli.main(args) == 0
    assert (tmp_path / "runs" / "maze-quick_f0_s2" / CHECKPOINT_NAME).exists()
    assert "cheese rate" in capsys.readouterr().out
