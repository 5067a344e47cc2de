"""Sweeps: the goal/proxy training hook, run_sweep end to end (outputs, resumability, a
failing run, local worker processes and retries), the `sweep` / `reproduce` commands and
their executor options.  The Ray executor: tests/test_sweep_ray.py.  Tiny budgets: a couple of PPO
iterations of 16 envs x 16 steps and 16-episode evaluations per run."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import coinrun_mg  # noqa: F401 - registers the env ids
from coinrun_mg import cli, executors, sweep
from coinrun_mg.agents import PROFILES, PPOConfig, train
from coinrun_mg.executors import LocalExecutor
from coinrun_mg.sweep import GoalProxyHook, run_sweep
from coinrun_mg.sweep_report import aggregate, format_table, table_note

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = dict(
    num_envs=16,
    num_steps=16,
    minibatch_size=64,
    max_episode_steps=20,  # short episodes: training and evaluation stay fast
    checkpoint_every=0,
)
RATE_KEYS = {"goal_rate", "proxy_rate", "died_rate", "timeout_rate", "episodes"}


def _sweep(out_dir, fractions=(0.0, 0.5), **kwargs):
    settings = dict(
        total_steps=512,  # two iterations
        episodes=16,
        device="cpu",
        overrides=TINY,
        hook_episodes=8,
        log=None,
    )
    settings.update(kwargs)
    return run_sweep(fractions, [0], "quick", out_dir, **settings)


def test_goal_proxy_hook_logs_the_five_scalars_to_tensorboard(tmp_path):
    config = PPOConfig.from_profile(
        "quick", device="cpu", total_steps=512, rand_fraction=0.5, progress_bar=False, **TINY
    )
    hook = GoalProxyHook(episodes=8, every_steps=256)
    result = train(config, tmp_path, hooks=[hook])
    for key in GoalProxyHook.KEYS:
        assert 0.0 <= result.stats[key] <= 1.0
    test_rates = [result.stats[f"eval/{o}_rate"] for o in ("goal", "proxy", "died", "timeout")]
    assert sum(test_rates) == pytest.approx(1.0)

    events = EventAccumulator(str(tmp_path))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert set(GoalProxyHook.KEYS) <= tags
    for key in GoalProxyHook.KEYS:
        steps = [e.step for e in events.Scalars(key)]
        assert steps == [256, 512]  # every 256 steps, the last one included
    last = events.Scalars("eval/train_coin_rate")[-1].value
    assert last == pytest.approx(result.stats["eval/train_coin_rate"])


def test_hook_rejects_bad_episodes():
    with pytest.raises(ValueError, match="episodes=0"):
        GoalProxyHook(episodes=0)


def test_sweep_end_to_end_then_resume_without_retraining(tmp_path):
    report = _sweep(tmp_path)

    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["runs"] == json.loads(json.dumps(report["runs"]))
    assert [(r["rand_fraction"], r["seed"]) for r in saved["runs"]] == [(0.0, 0), (0.5, 0)]
    for run in saved["runs"]:
        assert run["status"] == "done"
        assert run["filtered"] is True  # the fraction-0 agent of seed 0 is the reference
        assert "coin_rate" in run["train"]
        assert set(run["test"]) >= RATE_KEYS and set(run["test_all"]) >= RATE_KEYS
        assert run["test_all"]["episodes"] == 16
        assert run["test"]["episodes"] <= 16
        assert run["global_step"] == 512
    assert saved["failed"] == []
    assert [a["rand_fraction"] for a in saved["aggregate"]] == [0.0, 0.5]
    for entry in saved["aggregate"]:
        assert entry["seeds"] == [0]
        summary = entry["test_proxy_rate"]
        assert set(summary) == {"mean", "std", "ci", "n"} and summary["std"] == 0.0

    with open(tmp_path / "episodes.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 32
    assert {"rand_fraction", "seed", "outcome", "good_level"} <= set(rows[0])
    assert {r["rand_fraction"] for r in rows} == {"0.0", "0.5"}
    png = (tmp_path / "curve.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"

    table = format_table(saved["aggregate"])
    assert "test proxy rate" in table and "0.5" in table

    # A second call reads the markers: nothing is retrained or re-evaluated.
    runs = tmp_path / "runs"
    stamps = {p: p.stat().st_mtime_ns for p in runs.glob("*/*") if p.suffix in (".pt", ".json")}
    assert len(stamps) == 6  # checkpoint, config and result of each run
    again = _sweep(tmp_path)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert again["runs"] == report["runs"]

    # Changed settings redo the runs: a larger budget extends them from their checkpoints.
    longer = _sweep(tmp_path, total_steps=768, hook_episodes=0)
    assert [r["global_step"] for r in longer["runs"]] == [768, 768]
    assert longer["settings"]["total_steps"] == 768


def test_report_only_reads_the_finished_runs_and_writes_nothing(tmp_path, capsys):
    import fcntl

    _sweep(tmp_path, fractions=(0.0,))  # the fraction-0 run finished, 0.5 not started
    with open(tmp_path / ".sweep.lock", "a") as lock:  # a sweep is running into the folder
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
        partial = _sweep(tmp_path, report_only=True)
        args = ["sweep", "--fractions", "0,0.5", "--seeds", "0,", "--total-steps", "512"]
        args += ["--episodes", "16", "--device", "cpu", "--out", str(tmp_path)]
        args += [f"--set={k}={v}" for k, v in TINY.items()]
        assert cli.main([*args, "--report-only"]) == 0
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == before  # nothing written
    assert [(r["rand_fraction"], r["seed"]) for r in partial["runs"]] == [(0.0, 0)]
    assert partial["pending"] == ["f0.5_s0"]
    assert partial["progress"] == {"f0.5_s0": None}  # not started: no checkpoint
    out = capsys.readouterr().out
    assert "1 of 2 runs finished; pending: f0.5_s0; nothing written" in out

    full = _sweep(tmp_path)
    assert _sweep(tmp_path, report_only=True)["aggregate"] == full["aggregate"]
    # A run tested on all levels while its good-levels test is due is not finished yet.
    result = tmp_path / "runs" / "f0.5_s0" / "result.json"
    result.write_text(json.dumps({**json.loads(result.read_text()), "filtered": False}))
    assert _sweep(tmp_path, report_only=True)["pending"] == ["f0.5_s0"]
    # A pending run says how far it has trained (its checkpoint's step), or why not.
    result.unlink()
    assert cli.main([*args, "--report-only"]) == 0
    assert "pending: f0.5_s0 (512 of 512 steps)" in capsys.readouterr().out
    (tmp_path / "runs" / "f0.5_s0" / "checkpoint.pt").write_bytes(b"")
    assert _sweep(tmp_path, report_only=True)["progress"] == {
        "f0.5_s0": f"checkpoint unreadable: {tmp_path / 'runs' / 'f0.5_s0' / 'checkpoint.pt'} "
        "is empty (0 bytes): not a checkpoint"
    }


def test_a_failing_run_is_reported_and_the_others_kept(tmp_path, monkeypatch):
    real_train = sweep._train_and_evaluate

    def flaky(fraction, *args, **kwargs):
        if fraction == 0.0:
            raise RuntimeError("simulated crash")
        return real_train(fraction, *args, **kwargs)

    monkeypatch.setattr(sweep, "_train_and_evaluate", flaky)
    report = _sweep(tmp_path)
    status = {r["rand_fraction"]: r["status"] for r in report["runs"]}
    assert status == {0.0: "failed", 0.5: "done"}
    failed, kept = report["runs"]
    assert "RuntimeError: simulated crash" in failed["error"]
    assert report["failed"] == [
        {
            "rand_fraction": 0.0,
            "seed": 0,
            "error": "RuntimeError: simulated crash",
            "not_retried": "not retried: retries=1 used up (2 attempts)",
        }
    ]
    assert (failed["retryable"], failed["retried"]) == (True, True)
    assert not (tmp_path / "runs" / "f0_s0" / "result.json").exists()
    # Without its reference agent the run's test is unfiltered.
    assert kept["filtered"] is False and kept["test"] == kept["test_all"]
    by_fraction = {a["rand_fraction"]: a for a in report["aggregate"]}
    assert by_fraction[0.0]["failed_seeds"] == [0]
    assert by_fraction[0.0]["test_goal_rate"]["mean"] is None
    assert "failed" in format_table(report["aggregate"])
    assert (tmp_path / "curve.png").exists()
    assert json.loads((tmp_path / "report.json").read_text())["failed"] == report["failed"]

    # The next call retries the failed run, then evaluates the other one again on the
    # good levels of its now available reference, without retraining it.
    monkeypatch.setattr(sweep, "_train_and_evaluate", real_train)
    checkpoint = tmp_path / "runs" / "f0.5_s0" / "checkpoint.pt"
    stamp = checkpoint.stat().st_mtime_ns
    report = _sweep(tmp_path)
    assert report["failed"] == []
    assert [r["filtered"] for r in report["runs"]] == [True, True]
    assert checkpoint.stat().st_mtime_ns == stamp
    assert report["runs"][1]["global_step"] == 512


def test_aggregate_mean_std_and_interval_across_seeds():
    def run(seed, rate):
        section = {"goal_rate": rate, "goal_ci": [0.0, 1.0], "proxy_rate": 1 - rate}
        return {
            "rand_fraction": 0.2,
            "seed": seed,
            "status": "done",
            "train": {"coin_rate": rate},
            "test": section,
            "test_all": section,
        }

    (entry,) = aggregate([run(0, 0.2), run(1, 0.4), run(2, 0.6)])
    goal = entry["test_goal_rate"]
    assert goal["mean"] == pytest.approx(0.4) and goal["std"] == pytest.approx(0.2)
    half = 4.3027 * 0.2 / 3**0.5  # Student's t, 2 degrees of freedom
    assert goal["ci"] == pytest.approx([0.0, 0.4 + half])  # 0.4 - half < 0: clipped to a rate
    assert entry["test_died_rate"]["n"] == 0  # a missing metric is reported as such


@pytest.mark.parametrize(
    "bad, named",
    [
        (dict(fractions=(1.5,)), "fraction 1.5"),
        (dict(fractions=()), "fractions is empty"),
        (dict(seeds=(-1,)), "seed -1"),
        (dict(episodes=0), "episodes=0"),
        (dict(retries=-1), "retries=-1"),
        (dict(hook_episodes=-1), "hook_episodes=-1"),
        (dict(executor="dask"), "dask"),
    ],
)
def test_run_sweep_rejects_bad_arguments(tmp_path, bad, named):
    settings = dict(fractions=(0.0,), seeds=(0,), episodes=16)
    settings.update(bad)
    with pytest.raises(ValueError, match=named):
        run_sweep(profile="quick", out_dir=tmp_path, **settings)
    assert not (tmp_path / "runs").exists()


def test_cli_sweep_and_reproduce(tmp_path, capsys, monkeypatch):
    calls = []

    def fake_run_sweep(fractions, seeds, **kwargs):
        calls.append((fractions, seeds, kwargs))
        return {"aggregate": aggregate([]), "runs": [], "failed": []}

    monkeypatch.setattr(sweep, "run_sweep", fake_run_sweep)
    assert cli.main(["reproduce", "--out", str(tmp_path)]) == 0
    fractions, seeds, kwargs = calls[-1]
    assert (fractions, seeds, kwargs["profile"]) == ([0.0, 0.02], [0], "quick")
    assert kwargs["total_steps"] is None
    out = capsys.readouterr().out
    assert "train coin rate" in out and "wall time" in out

    args = ["sweep", "--fractions", "0,0.2,1", "--seeds", "3", "--total-steps", "1000"]
    assert cli.main([*args, "--episodes", "50", "--profile", "paper"]) == 0
    fractions, seeds, kwargs = calls[-1]
    assert (fractions, seeds) == ([0.0, 0.2, 1.0], [0, 1, 2])
    assert (kwargs["total_steps"], kwargs["episodes"], kwargs["profile"]) == (1000, 50, "paper")
    assert cli.main(["sweep", "--seeds", "4,7"]) == 0
    assert calls[-1][1] == [4, 7]
    assert cli.main(["sweep", "--seeds", "5,"]) == 0  # one seed alone
    assert calls[-1][1] == [5]
    # Step counts read as --eval-at reads them, in --total-steps and in --set.
    assert cli.main(["sweep", "--total-steps", "2.5M", "--set", "checkpoint_every=500k"]) == 0
    assert calls[-1][2]["total_steps"] == 2_500_000
    assert calls[-1][2]["overrides"]["checkpoint_every"] == 500_000
    capsys.readouterr()

    def failing_run_sweep(fractions, seeds, **kwargs):
        error = {"rand_fraction": 0.02, "seed": 0, "error": "RuntimeError: boom"}
        return {"aggregate": aggregate([]), "runs": [], "failed": [error]}

    monkeypatch.setattr(sweep, "run_sweep", failing_run_sweep)
    assert cli.main(["sweep", "--out", str(tmp_path)]) == 1
    assert "FAILED f=0.02 seed=0: RuntimeError: boom" in capsys.readouterr().out

    with pytest.raises(SystemExit):
        cli.main(["sweep", "--fractions", "0,2"])
    with pytest.raises(SystemExit):
        cli.main(["sweep", "--seeds", "x"])
    with pytest.raises(SystemExit):
        cli.main(["sweep", "--total-steps", "10X"])
    assert "--total-steps: steps value '10X' is invalid" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["sweep", "--seeds", "0"])  # zero seeds: the message says how to give seed 0
    assert "one seed alone with a comma: 0," in capsys.readouterr().err


def test_cli_reproduce_runs_end_to_end(tmp_path, capsys, monkeypatch):
    args = ["reproduce", "--out", str(tmp_path), "--total-steps", "256", "--episodes", "8"]
    args += ["--fractions", "0,0.5", "--hook-episodes", "0", "--device", "cpu"]
    # The quick profile's 512 envs x 64 steps would be a big first iteration: tiny it.
    monkeypatch.setitem(PROFILES, "quick", {**PROFILES["quick"], **TINY})
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "wall time" in out and "0.5" in out
    assert (tmp_path / "report.json").exists() and (tmp_path / "curve.png").exists()


def test_local_workers_run_side_by_side_and_retries(tmp_path, monkeypatch):
    # Two processes: fraction 0.5 does not wait for its reference; it is evaluated again on
    # the good levels once the fraction-0 run is done.
    messages = []
    workers = LocalExecutor(workers=2, torch_threads=1)
    report = _sweep(tmp_path, executor=workers, hook_episodes=0, log=messages.append)
    assert report["failed"] == []
    # Each run is said to be queued, then to start when its process starts.
    for name in ("f0_s0", "f0.5_s0"):
        said = [m.split()[1] for m in messages if m.startswith(f"[{name}]")]
        assert said[:3] == ["queued:", "training", "done:"]
    first, second = report["runs"]
    assert first["filtered"] and second["filtered"]
    assert second["reference"] == str(tmp_path / "runs" / "f0_s0" / "checkpoint.pt")
    assert (first["global_step"], second["global_step"]) == (512, 512)

    # Fault injection by environment variable (it reaches worker processes and Ray
    # nodes); here one run after another: a run failing once is retried, one failing
    # every time is reported.
    monkeypatch.setenv(sweep.FAIL_ENV, "f0_s0:9,f0.5_s0:1")
    report = _sweep(tmp_path / "again", retries=2, hook_episodes=0)
    failed, kept = report["runs"]
    assert (failed["status"], failed["attempts"]) == ("failed", 3)
    assert "injected failure" in report["failed"][0]["error"]
    assert (kept["status"], kept["attempts"], kept["filtered"]) == ("done", 2, False)


def test_cli_executor_options(tmp_path, capsys, monkeypatch):
    calls = []

    def fake_run_sweep(fractions, seeds, **kwargs):
        calls.append(kwargs)
        return {"aggregate": aggregate([]), "runs": [], "failed": []}

    monkeypatch.setattr(sweep, "run_sweep", fake_run_sweep)
    assert cli.main(["sweep", "--workers", "3", "--retries", "4", "--out", str(tmp_path)]) == 0
    executor = calls[-1]["executor"]
    assert isinstance(executor, LocalExecutor) and executor.workers == 3
    assert calls[-1]["retries"] == 4
    assert cli.main(["sweep", "--out", str(tmp_path)]) == 0
    assert calls[-1]["executor"].workers == 1 and calls[-1]["retries"] == 1
    # reproduce on a CPU: one process per run, up to the CPU count; --workers overrides.
    monkeypatch.setattr(cli.os, "cpu_count", lambda: 2)
    assert cli.main(["reproduce", "--device", "cpu", "--out", str(tmp_path)]) == 0
    assert calls[-1]["executor"].workers == 2 and calls[-1]["executor"].torch_threads == 1
    repro = ["reproduce", "--device", "cpu", "--fractions", "0,0.02,0.2", "--out", str(tmp_path)]
    assert cli.main(repro) == 0 and calls[-1]["executor"].workers == 2
    assert cli.main([*repro, "--workers", "1"]) == 0 and calls[-1]["executor"].workers == 1
    monkeypatch.setattr(cli.os, "cpu_count", lambda: 1)
    assert cli.main(["reproduce", "--device", "cpu", "--out", str(tmp_path)]) == 0
    assert calls[-1]["executor"].workers == 1
    capsys.readouterr()

    bad = (
        (["--address", "auto"], "--address auto needs --executor ray"),
        (["--gpus-per-run", "1"], "--gpus-per-run 1 needs --executor ray"),
        (["--workers", "0"], "workers=0 is invalid"),
        (["--executor", "ray", "--cpus-per-run", "-2"], "cpus_per_run=-2.0 is invalid"),
        (["--executor", "ray", "--address", "auto", "--workers", "2"], "local Ray instance"),
    )
    calls.clear()
    for extra, message in bad:
        assert cli.main(["sweep", "--out", str(tmp_path), *extra]) == 2, extra
        assert message in capsys.readouterr().err
    assert calls == []  # refused before the sweep
    with pytest.raises(SystemExit):
        cli.main(["sweep", "--executor", "dask"])


def test_ray_executor_without_ray_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(executors, "ray_available", lambda: False)
    assert cli.main(["sweep", "--executor", "ray", "--out", str(tmp_path)]) == 2
    assert 'pip install "coinrun-mg[ray]"' in capsys.readouterr().err
    with pytest.raises(ImportError, match=r"coinrun-mg\[ray\]"):
        run_sweep([0.0], [0], out_dir=tmp_path, executor="ray")
    assert not (tmp_path / "runs").exists()


def test_importing_the_package_does_not_import_ray():
    code = (
        "import sys, coinrun_mg, coinrun_mg.cli, coinrun_mg.sweep, coinrun_mg.executors; "
        "assert 'ray' not in sys.modules, 'ray was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _summary_run(fraction, seed, goal, proxy, coin):
    def section(goal, proxy):
        return {
            "goal_rate": goal,
            "goal_ci": [goal - 0.05, goal + 0.05],
            "proxy_rate": proxy,
            "proxy_ci": [proxy - 0.05, proxy + 0.05],
        }

    return {
        "rand_fraction": fraction,
        "seed": seed,
        "status": "done",
        "filtered": True,
        "train": {"coin_rate": coin, "coin_ci": [coin - 0.03, coin + 0.03]},
        "test": section(goal, proxy),
        "test_all": section(goal, proxy),
    }


def test_table_shows_each_seed_under_the_across_seed_mean():
    runs = [
        _summary_run(0.0, 0, 0.15, 0.70, 0.80),
        _summary_run(0.0, 1, 0.25, 0.60, 0.82),
        _summary_run(0.02, 0, 0.35, 0.48, 0.77),
    ]
    lines = format_table(aggregate(runs), runs).splitlines()
    mean = next(line for line in lines if line.split()[:2] == ["0", "mean"])
    assert "0.200 [" in mean and "0.650 [" in mean and mean.rstrip().endswith("2")
    assert any(line.split()[:3] == ["s0", "0.800", "[0.770,"] for line in lines)
    assert any(line.split()[:3] == ["s1", "0.820", "[0.790,"] for line in lines)
    # A fraction with one seed keeps one row: its own rates.
    assert sum(1 for line in lines if line.split()[0] == "0.02") == 1
    assert "seed rows" in table_note(aggregate(runs))
    # One seed everywhere: the table has no seed column.
    single = format_table(aggregate(runs[:1]), runs[:1])
    assert "mean" not in single and "seed rows" not in table_note(aggregate(runs[:1]))
