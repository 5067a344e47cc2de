"""The throughput benchmarks run end to end and report what they measured (tiny sizes)."""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import network_speed  # noqa: E402
import paired_ratio  # noqa: E402
import step_profile  # noqa: E402
import throughput  # noqa: E402

from coinrun_mg.envs.coinrun import observation as render  # noqa: E402

procgen_available = throughput.import_procgen()[0] is not None
TINY = ["--seconds", "0.05", "--warmup", "1", "--threads", "1"]


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """The scripts set torch's thread count for the whole process; put it back."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_throughput_reports_native_rows_and_ratios(tmp_path, capsys):
    out = tmp_path / "t.json"
    args = ["--envs", "4,8", "--obs", "symbolic,pixels", "--procgen-envs", "4", "--out", str(out)]
    if not procgen_available:
        args.append("--no-procgen")
    assert throughput.main([*args, *TINY]) == 0
    report = json.loads(out.read_text())
    native = [r for r in report["results"] if r["backend"] == "native"]
    assert [(r["obs"], r["envs"]) for r in native] == [
        ("symbolic", 4),
        ("symbolic", 8),
        ("pixels", 4),
        ("pixels", 8),
    ]
    for r in native:
        assert r["steps"] >= 5 and r["seconds"] > 0
        assert r["steps_per_s"] == pytest.approx(r["envs"] * r["steps"] / r["seconds"])
        assert r["memory_bytes_per_env"] > r["obs_bytes_per_env"] > 0
    assert native[0]["obs_bytes_per_env"] == 13 * 13 * 10
    assert native[2]["obs_bytes_per_env"] == 64 * 64 * 3
    if procgen_available:
        (procgen_row,) = [r for r in report["results"] if r["backend"] == "procgen"]
        best = report["procgen_best_steps_per_s"]
        assert best == procgen_row["steps_per_s"]
        assert native[0]["ratio_vs_procgen_same_envs"] == pytest.approx(
            native[0]["steps_per_s"] / best
        )
        assert "ratio_vs_procgen_same_envs" not in native[1]  # procgen did not run 8 envs
    assert "| native | pixels | 8 |" in capsys.readouterr().out


@pytest.mark.skipif(not procgen_available, reason="needs procgen")
def test_paired_ratio_alternates_and_summarises(tmp_path):
    out = tmp_path / "p.json"
    args = ["--envs", "4", "--compile", "off", "--procgen-envs", "4,8", "--rounds", "3"]
    assert paired_ratio.main([*args, "--out", str(out), *TINY]) == 0
    report = json.loads(out.read_text())
    rounds = report["rounds"]
    assert [r["order"][0] for r in rounds] == ["procgen", "native", "procgen"]
    for r in rounds:
        assert set(r["procgen"]) == {"4", "8"}  # JSON keys
        assert r["procgen_best_steps_per_s"] == max(r["procgen"].values())
        assert r["ratio"] == pytest.approx(r["native_steps_per_s"] / r["procgen_best_steps_per_s"])
    ratios = sorted(r["ratio"] for r in rounds)
    assert report["summary"]["ratio_median"] == pytest.approx(ratios[1])
    assert report["summary"]["ratio_min"] == ratios[0]
    assert report["summary"]["ratio_max"] == ratios[2]


@pytest.mark.skipif(not procgen_available, reason="needs procgen")
def test_paired_ratio_maze(tmp_path):
    out = tmp_path / "p.json"
    args = ["--game", "maze", "--envs", "4", "--compile", "off", "--procgen-envs", "4"]
    assert paired_ratio.main([*args, "--rounds", "2", "--out", str(out), *TINY]) == 0
    report = json.loads(out.read_text())
    assert report["game"] == "maze" and len(report["rounds"]) == 2
    assert all(r["ratio"] > 0 for r in report["rounds"])
    assert paired_ratio.parse_args(["--game", "maze"]).out.name == "paired_ratio_maze.json"


def test_paired_ratio_rejects_bad_arguments(capsys):
    with pytest.raises(SystemExit):
        paired_ratio.parse_args(["--rounds", "0"])
    assert "--rounds >= 1" in capsys.readouterr().err


def test_step_profile_times_the_parts_inside_steps(tmp_path):
    crop, cells = render._crop_padded, render._cell_bytes_in_pairs
    out = tmp_path / "s.json"
    args = ["--device", "cpu", "--envs", "1024", "--obs", "symbolic", "--compile", "off"]
    step_profile.main([*args, "--warmup", "2", "--repeats", "4", "--parts", "--out", str(out)])
    (row,) = json.loads(out.read_text())["rows"]
    parts = row["in_step_ms"]
    # 1,024 envs take the CPU path with pair tables, so every part of it ran.
    for name in ("step", "_physics", "observe", "_crop_padded", "_cell_bytes_in_pairs"):
        assert parts[name]["median"] > 0 and parts[name]["mean"] > 0
    # Each observation is part of its step, so the medians are ordered the same way.
    assert parts["_crop_padded"]["median"] < parts["observe"]["median"]
    assert parts["observe"]["median"] < parts["step"]["median"]
    # The timing wrappers are gone afterwards.
    assert render._crop_padded is crop and render._cell_bytes_in_pairs is cells


@pytest.mark.skipif(not procgen_available, reason="needs procgen")
def test_maze_fidelity_side_by_side(tmp_path, capsys):
    """maze_procgen_stats.py at a tiny size, native next to procgen: the cheese walker
    takes exactly the BFS length, the corner walker reaches the corner on every decision
    level, and every statistic gets its test."""
    import maze_procgen_stats as stats_script

    out = tmp_path / "stats.json"
    args = ["--levels", "12", "--envs", "4", "--corner-size", "2", "--modes", "easy"]
    assert stats_script.main([*args, "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report["stats"]) == {"easy stock", "easy corner"}
    for key, runs in report["stats"].items():
        assert set(runs) == {"Maze-v0", "ProcgenMaze-v0"}
        for s in runs.values():
            assert s["levels"] == 12 and sum(s["maze_dim"].values()) == 12
            assert s["cheese_walker_cheese"] == 1.0
            assert s["cheese_walker_steps_minus_bfs"] == 0.0
            # The corner or, on the way there, the cheese ends every corner walk.
            assert s["corner_walker_corner"] + s["corner_walker_cheese"] >= 1.0
            assert s["corner_walker_decision_levels"] == 0 or (
                s["corner_walker_decision_corner"] == 1.0
                and s["corner_walker_decision_cheese"] == 0.0
            )
            if key == "easy corner":
                assert s["cheese_walker_corner"] == 1.0  # k = 2: the cheese is in the region
                assert s["corner_walker_corner"] == 1.0
                assert s["cheese_moved_share"] == 0.0
            else:
                assert s["cheese_moved_share"] == 1.0
        assert set(report["comparisons"][key]) == set(stats_script.TESTS)
        for test in report["comparisons"][key].values():
            assert 0.0 <= test["p"] <= 1.0
    assert report["tests"] == 2 * len(stats_script.TESTS)
    assert "| p (test) |" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        stats_script.parse_args(["--env-id", "coinrun_mg/Nope-v0"])


def test_maze_fidelity_tests_detect_differences():
    """The two-sample tests: p near 1 for one sample against itself, tiny for shifted ones."""
    import maze_procgen_stats as stats_script

    rng = np.random.default_rng(0)
    a = rng.integers(0, 6, 1000)
    for test in (stats_script.chi2_homogeneity, stats_script.ks_2samp, stats_script.z_means):
        assert test(a, a)["p"] > 0.99
        assert test(a, a + 1)["p"] < 1e-6
    assert stats_script.z_proportions(a < 3, a < 3)["p"] == pytest.approx(1.0)
    assert stats_script.z_proportions(a < 3, a < 5)["p"] < 1e-6
    # The chi-square tail against known values (df 2: exp(-x / 2)).
    assert stats_script.chi2_sf(4.0, 2) == pytest.approx(math.exp(-2.0))


def test_throughput_runs_maze_against_procgen_maze(tmp_path):
    """``--game maze``: MazeCore rows (both views, eager and compiled) and procgen's maze."""
    out = tmp_path / "m.json"
    args = ["--game", "maze", "--envs", "4", "--procgen-envs", "1,4", "--compile", "off,on"]
    if not procgen_available:
        args.append("--no-procgen")
    assert throughput.main([*args, "--out", str(out), *TINY]) == 0
    report = json.loads(out.read_text())
    assert report["game"] == "maze"
    native = [r for r in report["results"] if r["backend"].startswith("native")]
    assert [(r["backend"], r["obs"]) for r in native] == [
        ("native", "symbolic"),
        ("native", "pixels"),
        ("native+compile", "symbolic"),
        ("native+compile", "pixels"),
    ]
    assert native[0]["obs_shape"] == [25, 25, 3] and native[1]["obs_shape"] == [64, 64, 3]
    if procgen_available:
        procgen_rows = [r for r in report["results"] if r["backend"] == "procgen"]
        assert [r["envs"] for r in procgen_rows] == [1, 4]
        best = max(r["steps_per_s"] for r in procgen_rows)
        assert report["procgen_best_steps_per_s"] == best
        for r in native:
            assert r["ratio_vs_procgen_best"] == pytest.approx(r["steps_per_s"] / best)
    assert throughput.parse_args(["--game", "maze"]).out.name == "throughput_maze.json"


def test_maze_pixel_and_symbolic_views_match_their_reference():
    """The fast Maze views draw exactly the reference images (``picture`` and the
    plane-by-plane symbolic view) in both modes, the agent on the cheese included."""
    from coinrun_mg.envs.maze import MazeConfig, start_states
    from coinrun_mg.envs.maze import observation as maze_render

    for mode in ("easy", "hard"):
        s = start_states(torch.arange(300) * 7 + 1, MazeConfig(distribution_mode=mode))
        s.agent_x[::2], s.agent_y[::2] = s.cheese_x[::2], s.cheese_y[::2]
        assert torch.equal(maze_render.pixel_obs(s), maze_render.picture(s, 64))
        planes = (s.wall, maze_render._at(s, s.cheese_x, s.cheese_y))
        planes += (maze_render._at(s, s.agent_x, s.agent_y),)
        expected = maze_render._image_rows(torch.stack(planes, dim=-1)).to(torch.uint8) * 255
        assert torch.equal(maze_render.symbolic_obs(s), expected)


@pytest.mark.usefixtures("one_torch_thread")
def test_maze_by_size_reports_every_maze_side(tmp_path, capsys):
    import maze_by_size

    from coinrun_mg.agents import PPOConfig, train

    config = PPOConfig.from_profile(
        "quick",
        game="maze",
        device="cpu",
        num_envs=8,
        num_steps=8,
        minibatch_size=16,
        total_steps=64,
        max_episode_steps=50,  # the script plays the checkpoint's configuration
        progress_bar=False,
        checkpoint_every=0,
    )
    train(config, tmp_path / "run")
    out = tmp_path / "sizes.json"
    args = [str(tmp_path / "run"), "--levels", "64", "--json", str(out)]
    assert maze_by_size.main(args) == 0
    rows = json.loads(out.read_text())["rows"]
    assert sum(r["levels"] for r in rows) == 64
    assert {r["maze_dim"] for r in rows} <= set(range(3, 16, 2)) and len(rows) >= 5
    assert all(0 <= r["cheese_rate"] <= 1 and 1 <= r["episode_length"] <= 50 for r in rows)
    printed = capsys.readouterr().out
    assert "| maze side | levels | cheese rate |" in printed
    won = sum(r["cheese_rate"] * r["levels"] for r in rows) / 64
    assert f"all 64 levels: cheese rate {won:.3f}" in printed


def test_oracle_cost_times_both_games_per_batch_size(capsys):
    import oracle_cost

    assert oracle_cost.main(["--levels", "2,3", "--threads", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    games = [(line.split()[0], line.split()[1], int(line.split()[2])) for line in lines]
    assert games == [
        (game, mode, size)
        for game in ("maze", "coinrun")
        for mode in ("easy", "hard")
        for size in (2, 3)
    ]
    for line in lines:  # every level of these seeds is solvable, so R* is a discounted 10
        solved, best = re.search(r"solved ([\d.]+), mean R\* ([\d.]+)", line).groups()
        assert float(solved) == 1.0 and 0 < float(best) <= 10


@pytest.mark.skipif(not procgen_available, reason="needs procgen")
def test_procgen_backend_compares_symbolic_pixels_and_raw_procgen(tmp_path, capsys):
    import procgen_backend

    out = tmp_path / "p.json"
    argv = ["--obs-mode", "both", "--envs", "2", "--block", "2", "--rounds", "1"]
    assert procgen_backend.main([*argv, "--no-levels", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    modes = report["symbolic_vs_pixels"]
    assert [m["config"] for m in modes] == ["fraction 0.02", "fraction 1.0"]
    for m in modes:
        assert m["symbolic_steps_per_s"] > 0 and m["pixels_steps_per_s"] > 0
        assert m["raw_steps_per_s"] > 0 and m["symbolic_over_pixels_time"] > 0
    assert "| symbolic/pixels time |" in capsys.readouterr().out


def test_network_speed_times_a_given_view_and_scale(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(network_speed, "OUT", tmp_path / "n.json")
    args = ["--networks", "grid", "--obs-shape", "29,29,3", "--scale", "2", "--act-batch", "4"]
    network_speed.main([*args, "--update-batch", "8", "--repeats", "1", "--torch-threads", "1"])
    (row,) = json.loads((tmp_path / "n.json").read_text())["rows"]
    assert row["obs_shape"] == [29, 29, 3] and row["scale"] == 2 and not row["compiled"]
    assert row["update_ms"] > 0 and row["act_ms"] > 0
    one = network_speed.Agent((29, 29, 3), 15, "grid", 1)
    assert row["parameters"] > sum(p.numel() for p in one.parameters())  # wider channels
    with pytest.raises(SystemExit):
        network_speed.main(["--obs-shape", "29,29"])
    assert "--obs-shape '29,29' is invalid" in capsys.readouterr().err
