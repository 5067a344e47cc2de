"""Sweeps and `reproduce --env maze`: Maze runs are tested on their decision levels (no
reference run needed), rows and budget rows carry Maze's columns, tables say so."""

from __future__ import annotations

import csv
import json

import pytest

from coinrun_mg import cli
from coinrun_mg.agents.config import GAME_PROFILES
from coinrun_mg.eval import MAZE_COLUMNS
from coinrun_mg.sweep import run_sweep
from coinrun_mg.sweep_report import format_table, table_note

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = dict(num_envs=16, num_steps=16, minibatch_size=64, max_episode_steps=30)


def test_maze_sweep_with_budgets_reports_decision_levels(tmp_path):
    report = run_sweep(
        [0.0, 0.5],
        [0],
        "quick",
        tmp_path,
        total_steps=512,
        episodes=24,
        device="cpu",
        overrides={"game": "maze", **TINY},
        hook_episodes=8,
        eval_at=[256],
        log=None,
    )
    runs = report["runs"]
    assert [r["status"] for r in runs] == ["done", "done"]
    for run in runs:
        assert run["filtered"] and run["filter"] == "decision levels" and run["reference"] is None
        assert run["test_all"]["episodes"] == 24 and run["test"]["episodes"] < 24
        assert run["test"]["died_rate"] == 0.0 and run["config"]["game"] == "maze"
        assert run["budgets"][0]["filtered"]
    assert {a["test_levels"] for a in report["aggregate"]} == {"decision levels"}
    assert "every cheese moved" in table_note(report["aggregate"])
    assert "train cheese rate" in format_table(report["aggregate"])
    with open(tmp_path / "episodes.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["rand_fraction", "seed", *MAZE_COLUMNS, "good_level"]
    assert all(row["good_level"] == row["decision_level"] for row in rows)
    with open(tmp_path / "budget_episodes.csv", newline="") as f:
        header = next(csv.reader(f))
    assert header[5:] == [*MAZE_COLUMNS, "good_level"]
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["aggregate"][0]["game"] == "maze"


def test_cli_reproduce_takes_the_maze(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(GAME_PROFILES["maze"], "quick", {**GAME_PROFILES["maze"]["quick"], **TINY})
    args = ["reproduce", "--env", "maze", "--out", str(tmp_path), "--total-steps", "256"]
    args += ["--episodes", "8", "--fractions", "0,0.5", "--hook-episodes", "0"]
    assert cli.main([*args, "--device", "cpu", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "decision levels" in out and "every cheese moved" in out
    with pytest.raises(SystemExit):
        cli.main(["reproduce", "--env", "pong", "--out", str(tmp_path / "x")])
    assert "invalid choice: 'pong'" in capsys.readouterr().err
