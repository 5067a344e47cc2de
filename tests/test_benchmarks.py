"""The throughput benchmarks run end to end and report what they measured (tiny sizes)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

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
def test_maze_stats_compare_procgen_and_native_side_by_side(tmp_path, capsys):
    import maze_procgen_stats

    out = tmp_path / "m.json"
    args = ["--levels", "6", "--envs", "3", "--out", str(out)]
    args += ["--env-id", "coinrun_mg/ProcgenMaze-v0", "--env-id", "coinrun_mg/Maze-v0"]
    assert maze_procgen_stats.main(args) == 0
    stats = json.loads(out.read_text())["stats"]
    assert set(stats) == {
        f"{b} {m}" for b in ("ProcgenMaze-v0", "Maze-v0") for m in ("easy", "hard")
    }
    assert "| statistic | ProcgenMaze-v0 easy" in capsys.readouterr().out


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
