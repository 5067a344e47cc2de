"""Maze videos and human play: the videos show evaluate()'s episodes, frames of the right
size and count with Maze's overlays, a trained Maze checkpoint through the CLI, refusals
of env ids of another game, and the Maze game of `coinrun-mg play`."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from coinrun_mg import COINRUN_ENV_ID, MAZE_ENV_ID, cli
from coinrun_mg import play as play_mod
from coinrun_mg.envs.maze.solver import ObservationWalker
from coinrun_mg.eval import evaluate
from coinrun_mg.pictures import MAZE_COLOURS
from coinrun_mg.play import Game, action_for_keys
from coinrun_mg.video import OUTCOME_COLOURS, MazeFrameComposer, record_videos

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZE = 128
EASY = {"distribution_mode": "easy", "device": "cpu"}


def has_colour(image: Image.Image, colour) -> bool:
    return bool((np.asarray(image.convert("RGB")) == np.array(colour)).all(axis=-1).any())


def test_maze_videos_show_the_episodes_evaluate_reports(tmp_path):
    walker = ObservationWalker("corner")
    videos = record_videos(
        walker,
        tmp_path,
        episodes=4,
        env_id=MAZE_ENV_ID,
        size=SIZE,
        video_format="gif",
        hold_seconds=1,
        **EASY,
    )
    report = evaluate(ObservationWalker("corner"), MAZE_ENV_ID, episodes=4, **EASY).all
    assert [v.episode for v in videos] == [0, 1, 2, 3]
    for video, row in zip(videos, report.rows):
        assert video.game == "maze"
        assert (video.level_seed, video.outcome, video.steps) == (
            row["level_seed"],
            row["outcome"],
            row["steps"],
        )
        assert video.goal_moved and video.coin_randomized  # the test configuration
        assert video.path.name == (
            f"episode{video.episode:03d}_level{video.level_seed}_{video.outcome}.gif"
        )
        with Image.open(video.path) as gif:
            assert gif.size == (video.width, video.height) == (SIZE, SIZE + 2 * 16)
            assert gif.n_frames == video.frames == video.steps + 2  # start, steps, banner
            gif.seek(gif.n_frames - 1)
            last = gif.convert("RGB")
        assert has_colour(last, OUTCOME_COLOURS[video.outcome])
        assert has_colour(last, MAZE_COLOURS["cheese"]) and has_colour(last, MAZE_COLOURS["start"])
    # The corner walker reaches the corner first wherever the cheese is off its path.
    assert "proxy" in {v.outcome for v in videos}


def test_maze_frame_header_names_moved_and_decision_levels():
    import torch

    from coinrun_mg.envs.maze import MazeConfig, start_states

    state = start_states(torch.arange(40), MazeConfig(distribution_mode="easy", rand_fraction=1))
    decision = state.decision_level.tolist()
    assert True in decision and False in decision  # both kinds among these levels
    for index in (decision.index(True), decision.index(False)):
        composer = MazeFrameComposer(state, index, SIZE, episode=index)
        assert composer.goal_moved and composer.decision_level == decision[index]
        frame = composer.frame(state, index, steps=0)
        assert frame.size == (SIZE, composer.height)
        assert has_colour(frame, MAZE_COLOURS["wall"]) and has_colour(frame, MAZE_COLOURS["cheese"])


def test_video_refuses_env_ids_of_another_game_naming_them(tmp_path):
    class CoinRunPolicy:  # what a CoinRun checkpoint's policy says of itself
        env_id, env_kwargs = "native", {}

        def __call__(self, obs):
            raise AssertionError("never played")

    with pytest.raises(ValueError, match="env_id='coinrun_mg/Maze-v0'.*coinrun"):
        record_videos(CoinRunPolicy(), tmp_path, episodes=1, env_id=MAZE_ENV_ID)
    with pytest.raises(ValueError, match="env_id='coinrun_mg/ProcgenMaze-v0' is invalid"):
        record_videos(CoinRunPolicy(), tmp_path, episodes=1, env_id="coinrun_mg/ProcgenMaze-v0")
    walker = ObservationWalker("cheese")  # says no game: the env id decides
    with pytest.raises(ValueError, match="corner_size=2 is not a coinrun setting"):
        record_videos(walker, tmp_path, episodes=1, env_id=COINRUN_ENV_ID, corner_size=2)


def test_cli_video_of_a_trained_maze_checkpoint(tmp_path, capsys):
    run_dir = tmp_path / "run"
    args = ["train", "--game", "maze", "--run-dir", str(run_dir), "--device", "cpu"]
    args += ["--num-envs", "8", "--num-steps", "16", "--minibatch-size", "64"]
    args += ["--total-steps", "128", "--no-progress"]
    assert cli.main(args) == 0
    out = tmp_path / "videos"
    video_args = ["video", str(run_dir), "--episodes", "2", "--out", str(out)]
    video_args += ["--format", "gif", "--size", "128", "--device", "cpu", "--no-progress"]
    assert cli.main(video_args) == 0
    printed = capsys.readouterr().out
    files = sorted(out.glob("episode*.gif"))
    assert len(files) == 2 and "wrote 2 videos (128x160)" in printed


def test_maze_game_moves_restarts_and_ends_in_the_corner():
    game = Game(
        seed=5,
        size=SIZE,
        game="maze",
        distribution_mode="easy",
        rand_fraction=1.0,
        corner_terminates=True,
    )
    start = (int(game.state.agent_x[0]), int(game.state.agent_y[0]))
    assert game.frame().size[0] == SIZE
    walker = ObservationWalker("corner")
    while not game.done:
        game.step(int(walker(game.env.core.observe())[0]))
    assert game.outcome in ("proxy", "goal") and game.steps > 0
    steps = game.steps
    game.step(action_for_keys({"up"}))
    assert game.steps == steps  # nothing moves once it is over
    assert has_colour(game.frame(), OUTCOME_COLOURS[game.outcome])
    game.start()
    assert game.steps == 0 and (int(game.state.agent_x[0]), int(game.state.agent_y[0])) == start
    game.next_level()
    assert game.level_seed == 6 and int(game.state.level_seed[0]) == 6
    with pytest.raises(ValueError, match="game='chess' is invalid"):
        Game(game="chess")


def test_maze_play_loop_on_the_dummy_display(monkeypatch):
    pygame = pytest.importorskip("pygame")
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    keys = iter(["n", "escape"])
    monkeypatch.setattr(
        pygame.event,
        "get",
        lambda: [pygame.event.Event(pygame.KEYDOWN, key=pygame.key.key_code(next(keys)))],
    )
    assert play_mod.play(seed=2, fps=1000, size=SIZE, game="maze", max_frames=10) == 0
    assert cli.build_parser().parse_args(["play", "--env", "maze"]).env == "maze"
