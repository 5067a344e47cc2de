"""Videos, level pictures and human play: files of the right size and frame count, the
overlay marks, outcomes that agree with the evaluation, determinism, the key mapping,
play's error without a display, its loop on SDL's dummy display, and every command's
``--help`` examples.  Small frames and short episodes: the file runs in well under 30 s
on two busy CPU cores."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence

from coinrun_mg import cli
from coinrun_mg import play as play_mod
from coinrun_mg.envs.coinrun import observation as render
from coinrun_mg.envs.coinrun.ascii import state_from_ascii
from coinrun_mg.eval import evaluate
from coinrun_mg.pictures import (
    draw_level,
    level_columns,
    level_rows,
    level_states,
    parse_seed_list,
    save_level_grid,
)
from coinrun_mg.play import Game, action_for_keys, command_for_key, display_problem
from coinrun_mg.video import OUTCOME_COLOURS, FrameComposer, available_formats, record_videos

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# Short episodes on small frames keep the videos cheap.
ENV = {"distribution_mode": "easy", "max_episode_steps": 30}
SIZE = 128


def right_jump(obs: torch.Tensor) -> torch.Tensor:
    return torch.full((obs.shape[0],), 8, dtype=torch.int64, device=obs.device)


def has_colour(image, colour) -> bool:
    return bool((np.asarray(image.convert("RGB")) == np.array(colour)).all(axis=-1).any())


def mp4_frames(path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


# --- videos -------------------------------------------------------------------------------


@pytest.mark.skipif("mp4" not in available_formats(), reason="needs PyAV (the video extra)")
def test_mp4_videos_match_the_evaluation(tmp_path):
    videos = record_videos(
        right_jump, tmp_path, episodes=3, seed=5, size=SIZE, fps=10, hold_seconds=0.5, **ENV
    )
    report = evaluate(right_jump, episodes=3, seed=5, num_envs=3, device="cpu", **ENV)
    assert [v.outcome for v in videos] == [r["outcome"] for r in report.rows]
    assert [v.steps for v in videos] == [r["steps"] for r in report.rows]
    assert [v.level_seed for v in videos] == [r["level_seed"] for r in report.rows]
    for v in videos:
        assert v.path.name == f"episode{v.episode:03d}_level{v.level_seed}_{v.outcome}.mp4"
        frames = mp4_frames(v.path)
        # The start, one frame per step, then half a second (5 frames) of banner.
        assert len(frames) == v.frames == v.steps + 1 + 5
        assert frames[0].shape == (v.height, v.width, 3) == (SIZE + 16 + 32, SIZE, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(v.path.name for v in videos)


def test_gif_videos_frames_marks_and_determinism(tmp_path):
    kwargs = dict(episodes=2, seed=3, size=SIZE, fps=10, hold_seconds=0.5, video_format="gif")
    seen = []
    videos = record_videos(right_jump, tmp_path / "a", on_frame=seen.append, **kwargs, **ENV)
    for v in videos:
        with Image.open(v.path) as gif:
            frames = [f.copy() for f in ImageSequence.Iterator(gif)]
            durations = [f.info["duration"] for f in ImageSequence.Iterator(gif)]
        # The banner is stored once and shown for the hold time.
        assert len(frames) == v.frames == v.steps + 2
        assert frames[0].size == (v.width, v.height) == (SIZE, SIZE + 16 + 32)
        assert durations[0] == 100 and durations[-1] == 500
        assert has_colour(frames[-1], OUTCOME_COLOURS[v.outcome])  # the banner
        assert has_colour(frames[0], render.COIN_COLOUR)  # the coin on the map
    # on_frame saw every drawn frame (not the banner), with the agent's position.
    assert len(seen) == sum(v.steps + 1 for v in videos)
    assert seen[0].step == 0 and seen[0].agent_x == pytest.approx(1.5)
    # Same seed, same files.
    again = record_videos(right_jump, tmp_path / "b", **kwargs, **ENV)
    assert [v.path.read_bytes() for v in again] == [v.path.read_bytes() for v in videos]


def test_sampling_policy_videos_match_the_evaluation_for_any_num_envs(tmp_path, sampling_policy):
    # Each episode samples from its own noise: other batch sizes, same outcomes.
    kwargs = dict(episodes=5, seed=2, **ENV)
    videos = record_videos(
        sampling_policy, tmp_path, num_envs=5, size=SIZE, video_format="gif", hold_seconds=0,
        **kwargs,
    )  # fmt: skip
    report = evaluate(sampling_policy, num_envs=2, device="cpu", **kwargs)
    assert len({v.steps for v in videos}) > 1
    assert [v.outcome for v in videos] == [r["outcome"] for r in report.rows]
    assert [v.steps for v in videos] == [r["steps"] for r in report.rows]
    assert [v.level_seed for v in videos] == [r["level_seed"] for r in report.rows]


def test_frame_overlays():
    s = state_from_ascii(
        [
            "          ",
            "  $    E  ",
            "A =====#  ",
        ]
    )
    s.level_seed[:] = 1234
    composer = FrameComposer(s, 0, size=256, episode=7)
    frame = composer.frame(s, 0, steps=12)
    assert frame.size == (256, composer.header_h + 256 + composer.map_h)
    view = frame.crop((0, composer.header_h, 256, composer.header_h + 256))
    strip = frame.crop((0, composer.header_h + 256, 256, frame.height))
    assert has_colour(view, render.COIN_COLOUR)
    dark, light = render.END_MARKER_COLOURS
    for part in (view, strip):  # the end, in the view and on the map
        assert has_colour(part, dark) and has_colour(part, light)
    assert has_colour(strip, render.COIN_COLOUR)
    # Once decided: the outcome in the header, then the banner across the view.
    decided = composer.frame(s, 0, steps=12, outcome="proxy")
    header = decided.crop((0, 0, 256, composer.header_h))
    assert has_colour(header, OUTCOME_COLOURS["proxy"]) or _near(header, "proxy")
    assert has_colour(composer.banner(decided, "proxy"), OUTCOME_COLOURS["proxy"])
    assert not has_colour(frame, OUTCOME_COLOURS["proxy"])


def _near(image, outcome, tolerance=40) -> bool:
    """Anti-aliased text: some pixel close to the outcome's colour."""
    pixels = np.asarray(image.convert("RGB")).astype(int)
    return bool((np.abs(pixels - OUTCOME_COLOURS[outcome]).sum(-1) < tolerance).any())


def test_video_errors(tmp_path):
    with pytest.raises(ValueError, match="video_format='avi'"):
        record_videos(right_jump, tmp_path, video_format="avi")
    with pytest.raises(ValueError, match="size=100"):
        record_videos(right_jump, tmp_path, size=100)
    with pytest.raises(ValueError, match="env_id='coinrun_mg/ProcgenCoinRun-v0'"):
        record_videos(right_jump, tmp_path, env_id="coinrun_mg/ProcgenCoinRun-v0")
    with pytest.raises(ValueError, match="episodes=0"):
        record_videos(right_jump, tmp_path, episodes=0)
    assert list(tmp_path.iterdir()) == []


def test_video_cli_on_a_tiny_checkpoint(tmp_path, capsys):
    from coinrun_mg.agents import PPOConfig, train

    config = PPOConfig.from_profile(
        "quick",
        device="cpu",
        num_envs=8,
        num_steps=8,
        minibatch_size=32,
        total_steps=64,
        max_episode_steps=20,
        checkpoint_every=0,
        progress_bar=False,
    )
    result = train(config, tmp_path / "run")
    capsys.readouterr()
    out = tmp_path / "videos"
    argv = ["video", str(result.checkpoint), "--episodes", "2", "--out", str(out)]
    argv += ["--size", "128", "--format", "gif", "--hold", "0.2", "--no-progress"]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    files = sorted(out.glob("*.gif"))
    assert len(files) == 2 and "wrote 2 videos (128x176)" in printed
    for path in files:
        with Image.open(path) as gif:
            assert gif.size == (128, 176) and 2 <= gif.n_frames <= 22
    assert cli.main(["video", str(tmp_path / "missing.pt")]) == 2


# --- level pictures -----------------------------------------------------------------------


def _pixel_at(pixels, rows: int, tile: int, x: float, y: float) -> tuple:
    """The pixel of a level picture at world point (x, y) (y up)."""
    return tuple(pixels[int((rows - y) * tile), int(x * tile)].tolist())


@pytest.mark.parametrize("i", [0, 1])
def test_draw_level_marks_start_coin_and_end(i):
    s = level_states([4, 11], rand_fraction=1.0)
    tile = 6
    image = draw_level(s, i, tile_px=tile, labels=False)
    rows, cols = level_rows(s, i), level_columns(s, i)
    assert image.size == (cols * tile, rows * tile)
    pixels = np.asarray(image)
    coin_x, coin_y = int(s.coin_x[i]), int(s.coin_y[i])
    assert _pixel_at(pixels, rows, tile, coin_x + 0.5, coin_y + 0.5) == render.COIN_COLOUR
    end_x, end_y = int(s.end_x[i]), int(s.end_y[i])
    end = pixels[
        (rows - end_y - 1) * tile : (rows - end_y) * tile, end_x * tile : (end_x + 1) * tile
    ]
    colours = {tuple(c) for c in end.reshape(-1, 3).tolist()}
    assert set(render.END_MARKER_COLOURS) <= colours  # the chequer
    agent = tuple(render.AGENT_COLOURS[int(s.theme[i])].tolist())
    start = _pixel_at(pixels, rows, tile, float(s.agent_x[i]), float(s.agent_y[i]) - 0.2)
    assert start == agent


def test_levels_cli_writes_a_grid(tmp_path, capsys):
    out = tmp_path / "pics" / "levels.png"
    argv = ["levels", "--seeds", "0-5", "--columns", "3", "--tile-px", "4", "--out", str(out)]
    assert cli.main(argv + ["--rand-fraction", "1"]) == 0
    assert "wrote" in capsys.readouterr().out
    with Image.open(out) as image:
        assert image.format == "PNG"
        width, height = image.size
        widest = max(level_columns(level_states(range(6), 1.0), i) for i in range(6)) * 4
        assert width >= 3 * widest
        # Two rows of levels plus captions and the legend.
        assert height > 2 * 4 * 8
        grid = np.asarray(image.convert("RGB"))
    # Six coins and the legend's (each coin is a disc of several pixels).
    coin = (grid == np.array(render.COIN_COLOUR)).all(-1)
    assert coin.sum() >= 7 * 4
    picture = save_level_grid(tmp_path / "b.png", [3], rand_fraction=0.0, labels=False)
    assert picture.exists()
    assert cli.main(["levels", "--seeds", "0-3", "--out", str(tmp_path / "x.unknown")]) == 2


@pytest.mark.parametrize(
    "text, seeds",
    [("0-3", [0, 1, 2, 3]), ("3,7,9", [3, 7, 9]), ("0-1,10", [0, 1, 10]), ("5", [5])],
)
def test_parse_seed_list(text, seeds):
    assert parse_seed_list(text) == seeds


@pytest.mark.parametrize("text", ["", "a", "5-2", "1-2-3", "-4"])
def test_parse_seed_list_errors(text):
    with pytest.raises(ValueError, match="seeds="):
        parse_seed_list(text)


# --- play ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "held, vx, vy",
    [
        ((), 0, 0),
        (("right",), 1, 0),
        (("right", "up"), 1, 1),
        (("left", "space"), -1, 1),
        (("a", "w"), -1, 1),
        (("d", "s"), 1, -1),
        (("left", "right"), 0, 0),
        (("up", "down"), 0, 1),
        (("down",), 0, -1),
        (("q", "right"), 1, 0),
    ],
)
def test_key_mapping(held, vx, vy):
    action = action_for_keys(held)
    # procgen's layout (CoinRunEnv's docstring): vx = a // 3 - 1, vy = a % 3 - 1.
    assert (action // 3 - 1, action % 3 - 1) == (vx, vy)


def test_command_keys():
    assert command_for_key("r") == "restart"
    assert command_for_key("n") == command_for_key("return") == "next"
    assert command_for_key("escape") == "quit"
    assert command_for_key("left") is None


def test_display_problem():
    message = display_problem({}, "linux")
    assert "DISPLAY" in message and "xvfb-run" in message
    pygame_missing = importlib.util.find_spec("pygame") is None
    for environ, platform in (({"DISPLAY": ":0"}, "linux"), ({}, "darwin")):
        problem = display_problem(environ, platform)
        assert (problem is not None) == pygame_missing
    assert display_problem({"SDL_VIDEODRIVER": "dummy"}, "linux") in (None, _no_pygame())


def _no_pygame() -> str:
    return "pygame is not installed; install it with: pip install 'coinrun-mg[play]'"


def test_play_without_a_display_exits_with_a_message(monkeypatch, capsys):
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(play_mod.sys, "platform", "linux")
    assert cli.main(["play", "--seed", "3"]) == 2
    err = capsys.readouterr().err
    assert "coinrun-mg play: error: no display" in err and "xvfb-run" in err


def test_play_without_pygame_exits_with_a_message(monkeypatch, capsys):
    monkeypatch.setenv("DISPLAY", ":0")
    real = importlib.util.find_spec
    monkeypatch.setattr(
        play_mod.importlib.util, "find_spec", lambda n: None if n == "pygame" else real(n)
    )
    assert cli.main(["play"]) == 2
    assert "pip install 'coinrun-mg[play]'" in capsys.readouterr().err


def test_game_steps_restarts_and_moves_on():
    game = Game(seed=3, size=SIZE, rand_fraction=1.0, distribution_mode="easy")
    first = game.frame()
    assert first.width == SIZE and first.height > SIZE + 48
    for _ in range(5):
        game.step(action_for_keys({"right"}))
    assert game.steps == 5 and float(game.state.agent_x[0]) > 1.5
    game.start()
    assert game.steps == 0 and float(game.state.agent_x[0]) == pytest.approx(1.5)
    game.next_level()
    assert game.level_seed == 4 and int(game.state.level_seed[0]) == 4
    with pytest.raises(ValueError, match="seed=-1"):
        Game(seed=-1)


def test_game_shows_the_outcome():
    # Walk right into lava: DIED, and the episode is over.
    s_lines = ["A  ~~~ $"]
    game = Game(seed=0, size=SIZE)
    game.env.core.state = state_from_ascii(s_lines)
    game.composer = FrameComposer(game.state, 0, SIZE)
    for _ in range(20):
        game.step(action_for_keys({"right"}))
    assert (game.outcome, game.done) == ("died", True)
    steps = game.steps
    game.step(4)
    assert game.steps == steps  # nothing moves once it is over
    assert has_colour(game.frame(), OUTCOME_COLOURS["died"])


def test_play_loop_on_the_dummy_display(monkeypatch):
    pygame = pytest.importorskip("pygame")
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    keys = iter(["r", "n", "escape"])
    calls = []

    def events():
        calls.append(1)
        name = next(keys)
        return [pygame.event.Event(pygame.KEYDOWN, key=pygame.key.key_code(name))]

    monkeypatch.setattr(pygame.event, "get", events)
    assert play_mod.play(seed=2, fps=1000, size=SIZE, max_frames=50) == 0
    assert len(calls) == 3  # Esc ended the loop on the third frame


# --- help -----------------------------------------------------------------------------------


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_every_command_has_examples(command, capsys):
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    assert "examples:" in capsys.readouterr().out
