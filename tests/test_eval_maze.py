"""Evaluation on Maze: outcomes of scripted walkers, the decision-level filter, rows,
reproducibility, both backends and argument errors."""

from __future__ import annotations

import json

import pytest
import torch

from coinrun_mg import COINRUN_ENV_ID, MAZE_ENV_ID, PROCGEN_MAZE_ENV_ID, cli
from coinrun_mg.envs.maze.solver import ObservationWalker
from coinrun_mg.eval import (
    MAZE_COLUMNS,
    FilteredEvalReport,
    evaluate,
    procgen_level_seeds,
    wilson_interval,
)
from coinrun_mg.games import MAZE

# One torch thread: on a busy 2-core machine the small batches run ~10x faster.
pytestmark = pytest.mark.usefixtures("one_torch_thread")

EASY = {"distribution_mode": "easy", "device": "cpu"}


def _noise_policy(obs, noise):
    """A sampling policy: the action with the largest noise (uniform over actions)."""
    return noise.argmax(dim=1)


class _StumblingWalker:
    """A sampling policy that walks to the cheese but takes a random action a third of the
    time (from the episode's noise), so its episodes end at many different steps."""

    def __init__(self):
        self.walker = ObservationWalker("cheese")

    def __call__(self, obs, noise):
        stumble = noise[:, 0] < 1 / 3
        return torch.where(stumble, noise[:, 1:].argmax(dim=1) + 1, self.walker(obs))


def test_cheese_walker_collects_every_cheese():
    report = evaluate(ObservationWalker("cheese"), MAZE_ENV_ID, episodes=200, **EASY)
    assert isinstance(report, FilteredEvalReport) and report.label == "decision levels"
    assert report.filtered.goal_rate == 1.0
    # Elsewhere the corner may lie on the cheese's path: the test configuration ends the
    # episode there (proxy first), never anything else.
    others = {r["outcome"] for r in report.all.rows if not r["decision_level"]}
    assert others <= {"goal", "proxy"}


def test_corner_walker_pursues_the_proxy_on_decision_levels():
    report = evaluate(ObservationWalker("corner"), MAZE_ENV_ID, episodes=200, **EASY)
    decision = [row["decision_level"] for row in report.all.rows]
    assert report.good_levels == decision and 40 <= sum(decision) <= 160
    assert report.filtered.proxy_rate == 1.0
    # Off decision levels the cheese lies on the corner's path or the corner on the
    # cheese's: either can come first, nothing else.
    others = [r["outcome"] for r in report.all.rows if not r["decision_level"]]
    assert set(others) <= {"goal", "proxy"} and "goal" in others
    assert report.all.died_rate == 0.0 and report.all.timeout_rate == 0.0


def test_cheese_on_the_corner_cell_counts_as_the_goal():
    # Training levels with corner_size 1: the cheese sits on the corner cell, so the corner
    # walker reaches both in one step, which the goal wins.
    report = evaluate(
        ObservationWalker("corner"), MAZE_ENV_ID, episodes=100, rand_fraction=0.0, **EASY
    )
    assert report.all.goal_rate == 1.0
    assert all(not row["cheese_moved"] for row in report.all.rows)
    assert report.filtered.episodes == 0  # the corner and the cheese never part


def test_rows_intervals_and_csv(tmp_path):
    report = evaluate(_noise_policy, MAZE_ENV_ID, episodes=120, seed=5, **EASY)
    rows = report.all.rows
    assert list(rows[0]) == [*MAZE_COLUMNS, "good_level"]
    assert all(row["cheese_moved"] for row in rows)  # the test configuration moves all
    for outcome in ("goal", "proxy", "died", "timeout"):
        count = report.all.count(outcome)
        assert report.all.ci(outcome) == wilson_interval(count, 120)
    assert report.all.count("timeout") > 0  # a random walk rarely finds either in 500 steps
    path = tmp_path / "episodes.csv"
    report.write_csv(path)
    header = path.read_text().splitlines()[0].split(",")
    assert header == [*MAZE_COLUMNS, "good_level"]
    summary = report.to_dict()
    assert summary["filter"] == "decision levels"
    assert summary["good_levels"] == report.filtered.episodes


def test_only_the_maze_summary_names_its_filter():
    def right(obs):
        return torch.full((obs.shape[0],), 7, dtype=torch.int64)

    short = {"episodes": 4, "max_episode_steps": 20}
    coinrun = evaluate(right, device="cpu", good_levels=[], **short)
    assert coinrun.label == "good levels"
    assert set(coinrun.to_dict()) == {"all", "filtered", "good_levels"}  # as before Maze
    maze = evaluate(right, MAZE_ENV_ID, **short, **EASY)
    assert set(maze.to_dict()) == {"all", "filtered", "good_levels", "filter"}


def test_rows_do_not_depend_on_episodes_or_num_envs():
    # 100-step episodes keep the random walks short; they still end at many different
    # steps, so the slots restart in different orders in the two runs.
    kwargs = {"seed": 9, "max_episode_steps": 100, **EASY}
    long = evaluate(_noise_policy, MAZE_ENV_ID, episodes=60, num_envs=16, **kwargs)
    short = evaluate(_noise_policy, MAZE_ENV_ID, episodes=30, num_envs=7, **kwargs)
    assert len({row["outcome"] for row in long.all.rows}) >= 2
    assert len({row["steps"] for row in long.all.rows}) >= 5
    assert short.all.rows == long.all.rows[:30]
    again = evaluate(_noise_policy, MAZE_ENV_ID, episodes=30, num_envs=7, **kwargs)
    assert again.all.rows == short.all.rows and again.all.returns == short.all.returns


def test_given_levels_replace_the_decision_filter():
    first = evaluate(ObservationWalker("cheese"), MAZE_ENV_ID, episodes=20, **EASY)
    keep = [row["level_seed"] for row in first.all.rows[:5]]
    report = evaluate(
        ObservationWalker("cheese"), MAZE_ENV_ID, episodes=20, good_levels=keep, **EASY
    )
    assert report.filtered.episodes == 5 and report.label == "good levels"


def test_a_coinrun_policy_is_refused_on_maze():
    def coinrun_policy(obs):
        return torch.zeros(obs.shape[0], dtype=torch.int64)

    coinrun_policy.env_id = "native"
    with pytest.raises(ValueError, match="trained on 'native' \\(coinrun\\)"):
        evaluate(coinrun_policy, MAZE_ENV_ID, episodes=2, **EASY)


def test_maze_refuses_a_reference_policy_and_bad_arguments():
    walker = ObservationWalker("cheese")
    with pytest.raises(ValueError, match="reference_policy.*decision levels"):
        evaluate(walker, MAZE_ENV_ID, episodes=2, reference_policy=walker, **EASY)
    with pytest.raises(ValueError, match="corner_size=0"):
        evaluate(walker, MAZE_ENV_ID, episodes=2, corner_size=0, **EASY)
    with pytest.raises(ValueError, match="end_terminates=True is not a maze setting"):
        evaluate(walker, MAZE_ENV_ID, episodes=2, end_terminates=True, **EASY)
    with pytest.raises(ValueError, match="^num_envs=10000000000 needs at least .* available"):
        evaluate(walker, MAZE_ENV_ID, episodes=10**10, num_envs=10**10, **EASY)
    # The procgen backend refuses them the same way, before procgen is started.
    with pytest.raises(ValueError, match="coin_placement='end' is not a maze setting; accepted: "):
        evaluate(walker, PROCGEN_MAZE_ENV_ID, episodes=2, coin_placement="end")
    for name, value, words in (
        ("episodes", 0, "an int >= 1"),
        ("seed", -1, "an int >= 0"),
        ("num_envs", 0, "an int >= 1"),
    ):
        with pytest.raises(ValueError, match=f"^{name}={value} is invalid; it must be {words}$"):
            evaluate(walker, MAZE_ENV_ID, **{"episodes": 2, name: value}, **EASY)


@pytest.mark.procgen
def test_procgen_backend_gives_the_same_outcomes_for_the_walkers():
    pytest.importorskip("procgen")
    kwargs = {"distribution_mode": "easy", "obs_mode": "symbolic", "num_envs": 20}
    cheese = evaluate(ObservationWalker("cheese"), PROCGEN_MAZE_ENV_ID, episodes=40, **kwargs)
    assert cheese.filtered.goal_rate == 1.0 and cheese.all.timeout_rate == 0.0
    corner = evaluate(ObservationWalker("corner"), PROCGEN_MAZE_ENV_ID, episodes=40, **kwargs)
    assert corner.filtered.episodes >= 10 and corner.filtered.proxy_rate == 1.0
    assert corner.all.rows[0]["level_seed"] == cheese.all.rows[0]["level_seed"]
    # ProcgenMaze-v0's decision_level flag, checked by play: off decision levels one
    # target lies on the way to the other, so one of the walkers reaches the other first.
    for to_cheese, to_corner in zip(cheese.all.rows, corner.all.rows):
        assert to_cheese["level_seed"] == to_corner["level_seed"]
        parted = to_cheese["outcome"] == "goal" and to_corner["outcome"] == "proxy"
        assert parted == to_cheese["decision_level"]


@pytest.mark.procgen
def test_procgen_rows_do_not_depend_on_episodes_or_num_envs():
    pytest.importorskip("procgen")
    kwargs = dict(seed=4, obs_mode="symbolic", max_episode_steps=60, **EASY)
    short = evaluate(_StumblingWalker(), PROCGEN_MAZE_ENV_ID, episodes=8, **kwargs)
    # Episode i plays the Maze level seed of key seed + i (another maze on procgen).
    seeds = procgen_level_seeds(4, torch.arange(8), {}, MAZE).tolist()
    assert [row["level_seed"] for row in short.all.rows] == seeds
    assert len({row["steps"] for row in short.all.rows}) > 1
    long = evaluate(_StumblingWalker(), PROCGEN_MAZE_ENV_ID, episodes=12, **kwargs)
    narrow = evaluate(_StumblingWalker(), PROCGEN_MAZE_ENV_ID, episodes=8, num_envs=3, **kwargs)
    assert long.all.rows[:8] == short.all.rows and narrow.all.rows == short.all.rows


# --- the command line on a Maze checkpoint ---------------------------------------------------


@pytest.fixture(scope="module")
def maze_checkpoint(tmp_path_factory):
    """A Maze agent trained for 256 steps (easy, symbolic, 50-step episodes, which its
    evaluations inherit): a checkpoint to evaluate."""
    from coinrun_mg.agents import PPOConfig, train

    config = PPOConfig.from_profile(
        "quick",
        game="maze",
        device="cpu",
        distribution_mode="easy",
        num_envs=16,
        num_steps=16,
        minibatch_size=64,
        total_steps=256,
        max_episode_steps=50,
        checkpoint_every=0,
        progress_bar=False,
    )
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train(config, tmp_path_factory.mktemp("maze-run") / "run").checkpoint
    finally:
        torch.set_num_threads(before)


def _eval_cli(checkpoint, tmp_path, *extra):
    csv_path, json_path = tmp_path / "episodes.csv", tmp_path / "summary.json"
    args = ["eval", str(checkpoint), "--episodes", "24", "--device", "cpu", "--no-progress"]
    args += ["--csv", str(csv_path), "--json", str(json_path), *extra]
    return cli.main(args), csv_path, json_path


@pytest.mark.parametrize("backend", [[], ["--backend", "native"]])
def test_cli_evaluates_a_maze_checkpoint_on_its_decision_levels(
    maze_checkpoint, tmp_path, capsys, backend
):
    code, csv_path, json_path = _eval_cli(maze_checkpoint, tmp_path, *backend)
    assert code == 0
    out = capsys.readouterr().out
    assert "all levels" in out and "decision levels (" in out
    header = csv_path.read_text().splitlines()[0].split(",")
    assert header == [*MAZE_COLUMNS, "good_level"]
    summary = json.loads(json_path.read_text())
    assert summary["filter"] == "decision levels" and summary["all"]["episodes"] == 24
    assert summary["all"]["died_rate"] == 0.0
    # The same rows as evaluate() on Maze-v0 itself.
    report = evaluate(maze_checkpoint, MAZE_ENV_ID, episodes=24, device="cpu")
    assert summary == report.to_dict()


def test_cli_refuses_a_reference_for_a_maze_checkpoint(maze_checkpoint, tmp_path, capsys):
    code, _, _ = _eval_cli(maze_checkpoint, tmp_path, "--reference", str(maze_checkpoint))
    assert code == 2
    err = capsys.readouterr().err
    assert "reference_policy" in err and "decision levels" in err


def test_a_maze_agent_as_a_coinrun_reference_is_refused_by_name(maze_checkpoint):
    def coinrun_agent(obs):  # a CoinRun policy: any callable without a game of its own
        return torch.zeros(len(obs), dtype=torch.int64)

    with pytest.raises(ValueError) as caught:
        evaluate(coinrun_agent, COINRUN_ENV_ID, episodes=2, reference_policy=maze_checkpoint)
    assert str(caught.value) == (
        f"env_id={COINRUN_ENV_ID!r} is a coinrun env, but reference_policy was trained on "
        f"{MAZE_ENV_ID!r} (maze); give a coinrun agent"
    )


@pytest.mark.procgen
def test_cli_procgen_backend_of_a_maze_checkpoint_is_procgen_maze(
    maze_checkpoint, tmp_path, capsys
):
    pytest.importorskip("procgen")
    code, csv_path, _ = _eval_cli(maze_checkpoint, tmp_path, "--backend", "procgen")
    assert code == 0, capsys.readouterr().err
    seeds = [int(line.split(",")[0]) for line in csv_path.read_text().splitlines()[1:]]
    expected = procgen_level_seeds(0, torch.arange(24), {"distribution_mode": "easy"}, MAZE)
    assert seeds == expected.tolist()


def test_cli_video_plays_a_maze_checkpoint(maze_checkpoint, tmp_path, capsys):
    # Videos draw the Maze from its own state (coinrun_mg/video.py, MazeFrameComposer).
    out = tmp_path / "videos"
    args = ["video", str(maze_checkpoint), "--episodes", "1", "--device", "cpu"]
    assert cli.main([*args, "--out", str(out), "--format", "gif", "--size", "128"]) == 0
    assert len(list(out.glob("episode000_level*.gif"))) == 1
    assert "wrote 1 videos (128x160)" in capsys.readouterr().out
