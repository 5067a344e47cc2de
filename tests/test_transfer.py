"""Across backends: native-trained symbolic agents evaluated on stock procgen CoinRun (the
``eval`` CLI with --backend procgen and a reference there), observations other than a
checkpoint's refused, the sweep's --eval-backends transfer section, and training on the
procgen backend's symbolic view (then resuming).  Tiny runs and short episodes."""

from __future__ import annotations

import contextlib
import csv
import io
import json

import pytest
import torch

import coinrun_mg
from coinrun_mg import cli
from coinrun_mg.agents import PPOConfig, load_policy, train
from coinrun_mg.eval import FilteredEvalReport, evaluate

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PROCGEN_ID = coinrun_mg.PROCGEN_COINRUN_ENV_ID
TINY = dict(
    num_envs=16,
    num_steps=16,
    minibatch_size=64,
    max_episode_steps=40,  # short episodes: evaluations stay fast on both backends
    checkpoint_every=0,
    progress_bar=False,
)


def _procgen():
    with contextlib.redirect_stderr(io.StringIO()):  # old gym's banner
        return pytest.importorskip("procgen")


def _checkpoint(path, **overrides):
    settings = {**TINY, "total_steps": 256, **overrides}
    return train(PPOConfig.from_profile("quick", device="cpu", **settings), path).checkpoint


def right_jump(obs: torch.Tensor) -> torch.Tensor:
    return torch.full((obs.shape[0],), 8, dtype=torch.int64)


def test_observations_other_than_the_checkpoints_are_refused(tmp_path):
    one_batch = dict(total_steps=64, num_envs=8, num_steps=8, minibatch_size=32)
    symbolic = _checkpoint(tmp_path / "symbolic", **one_batch)
    pixels = _checkpoint(tmp_path / "pixels", obs_mode="pixels", network="impala", **one_batch)
    with pytest.raises(ValueError, match="obs_mode='pixels' is invalid.*obs_mode='symbolic'"):
        evaluate(symbolic, episodes=2, device="cpu", obs_mode="pixels")
    with pytest.raises(ValueError, match="view_size=11 is invalid.*13x13"):
        evaluate(symbolic, episodes=2, device="cpu", view_size=11)
    # Refused before procgen is started: no procgen needed for the message.
    with pytest.raises(ValueError, match="obs_mode='symbolic' is invalid.*obs_mode='pixels'"):
        evaluate(pixels, env_id=PROCGEN_ID, episodes=2, device="cpu", obs_mode="symbolic")
    with pytest.raises(ValueError, match=f"on {PROCGEN_ID}"):
        evaluate(symbolic, env_id=PROCGEN_ID, episodes=2, device="cpu", obs_mode="pixels")


@pytest.mark.procgen
def test_native_checkpoint_on_procgen_through_the_cli(tmp_path, capsys):
    _procgen()
    ckpt = _checkpoint(tmp_path / "f0", rand_fraction=0.0)
    out_csv, out_json = tmp_path / "rows.csv", tmp_path / "summary.json"
    argv = ["eval", str(ckpt), "--backend", "procgen", "--reference", str(ckpt)]
    argv += ["--episodes", "8", "--num-envs", "4", "--device", "cpu", "--no-progress"]
    assert cli.main([*argv, "--csv", str(out_csv), "--json", str(out_json)]) == 0
    printed = capsys.readouterr().out
    assert "good levels (" in printed and "episodes 8" in printed
    summary = json.loads(out_json.read_text())
    assert summary["all"]["episodes"] == 8
    assert summary["filtered"]["episodes"] == summary["good_levels"]
    with open(out_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8 and "good_level" in rows[0]
    # The API gives the same, on procgen, with the checkpoint's symbolic view.
    report = evaluate(
        ckpt, env_id=PROCGEN_ID, episodes=8, num_envs=4, device="cpu", reference_policy=ckpt
    )
    assert report.to_dict() == summary
    assert report.all.meta["env_kwargs"]["obs_mode"] == "symbolic"


@pytest.mark.procgen
def test_procgen_good_levels_with_the_same_deterministic_policy():
    # As on the native env: the reference run follows the test run up to the moved coin,
    # so every level whose coin the test run got is a bad level.  The test run sees the
    # symbolic view; the reference (a plain callable) pixels, its position tracked.
    _procgen()
    kwargs = dict(env_id=PROCGEN_ID, episodes=12, seed=5, num_envs=8, device="cpu")
    kwargs.update(distribution_mode="easy", max_episode_steps=60)
    result = evaluate(right_jump, reference_policy=right_jump, obs_mode="symbolic", **kwargs)
    assert isinstance(result, FilteredEvalReport)
    assert 0 < result.filtered.episodes < 12
    assert result.all.count("goal") > 0 and result.filtered.goal_rate == 0.0
    again = evaluate(right_jump, reference_policy=right_jump, obs_mode="symbolic", **kwargs)
    assert again.good_levels == result.good_levels


@pytest.mark.procgen
def test_sweep_eval_backends_adds_a_transfer_section(tmp_path, capsys, monkeypatch):
    _procgen()
    from coinrun_mg.sweep import run_sweep
    from coinrun_mg.transfer import TRANSFER_CSV, TRANSFER_RATES, format_transfer_table

    settings = dict(
        total_steps=256, episodes=6, device="cpu", overrides=TINY, hook_episodes=0, log=None
    )
    report = run_sweep(
        [0.0, 0.5], [0], "quick", tmp_path, eval_backends=("native", "procgen"), **settings
    )
    assert report["settings"]["eval_backends"] == ["native", "procgen"]
    transfer = report["transfer"]
    assert transfer["backends"] == ["native", "procgen"]
    assert [a["rand_fraction"] for a in transfer["aggregate"]] == [0.0, 0.5]
    for entry in transfer["aggregate"]:
        assert entry["seeds"] == [0] and entry["interval"] == "episodes"
        for backend in ("native", "procgen"):
            side = entry[backend]
            assert side["test_levels"] == "good levels"
            for key in TRANSFER_RATES:
                assert set(side[key]) == {"mean", "std", "ci", "n"}
    for run in report["runs"]:
        native, procgen = run["transfer"]["native"], run["transfer"]["procgen"]
        assert native["test"] == run["test"] and native["filtered"] is True
        assert procgen["env_id"] == PROCGEN_ID and procgen["test_all"]["episodes"] == 6
        assert len(procgen["test_all"]["goal_ci"]) == 2
    with open(tmp_path / TRANSFER_CSV, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 2 * 6
    assert {r["backend"] for r in rows} == {"native", "procgen"}
    table = format_transfer_table(transfer)
    assert "procgen" in table and "test died rate" in table

    # Resumable: a second call reads the runs' result files.
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.glob("runs/*/*.json")}
    again = run_sweep(
        [0.0, 0.5], [0], "quick", tmp_path, eval_backends=("native", "procgen"), **settings
    )
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert again["transfer"] == transfer

    # Without the reference's checkpoint (a sweep resumed from its committed results), a
    # run evaluated again takes the good levels its reference run recorded on each
    # backend: the same levels, the same rates.
    (tmp_path / "runs" / "f0_s0" / "checkpoint.pt").unlink()
    (tmp_path / "runs" / "f0.5_s0" / "result.json").unlink()
    redone = run_sweep(
        [0.0, 0.5], [0], "quick", tmp_path, eval_backends=("native", "procgen"), **settings
    )
    assert redone["runs"][1]["transfer"] == report["runs"][1]["transfer"]
    assert redone["runs"][1]["test"] == report["runs"][1]["test"]

    # The command prints the transfer table after the main one.
    monkeypatch.setattr("coinrun_mg.sweep.run_sweep", lambda *args, **kwargs: again)
    argv = ["sweep", "--eval-backends", "native,procgen", "--out", str(tmp_path)]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "test timeout rate" in printed and "  procgen  " in printed and TRANSFER_CSV in printed
    with pytest.raises(SystemExit):
        cli.main(["sweep", "--eval-backends", "native,gpu", "--out", str(tmp_path)])
    assert "native, procgen" in capsys.readouterr().err


@pytest.mark.procgen
def test_training_on_the_procgen_symbolic_view_then_resume(tmp_path, capsys):
    _procgen()
    run_dir = tmp_path / "run"
    argv = ["train", "--profile", "quick", "--env-id", PROCGEN_ID, "--obs-mode", "symbolic"]
    argv += ["--num-envs", "8", "--num-steps", "16", "--minibatch-size", "32"]
    argv += ["--max-episode-steps", "40", "--device", "cpu", "--no-progress"]
    argv += ["--run-dir", str(run_dir)]
    assert cli.main([*argv, "--total-steps", "256"]) == 0
    assert "done: 256 steps" in capsys.readouterr().out
    resume = ["train", "--run-dir", str(run_dir), "--resume", "--total-steps", "384"]
    assert cli.main([*resume, "--no-progress"]) == 0
    assert "done: 384 steps" in capsys.readouterr().out
    policy = load_policy(run_dir, device="cpu", env_id=PROCGEN_ID, obs_mode="symbolic")
    assert policy.obs_shape == (13, 13, 10)
    # The transfer the other way: the procgen-trained agent on the native env.
    report = evaluate(policy, env_id="native", episodes=4, device="cpu")
    assert report.episodes == 4 and report.meta["env_id"] == coinrun_mg.COINRUN_ENV_ID
