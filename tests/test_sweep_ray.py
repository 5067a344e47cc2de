"""The Ray executor on a local Ray instance with 2 CPUs: a tiny sweep equal to the local
executor's, a failing run retried and reported, Ctrl-C then a resumed rerun.

Tiny budgets (two PPO iterations of 16 envs x 16 steps, 16-episode evaluations); each Ray
task trains on one torch thread, as the local sweep does under the one_torch_thread
fixture, so the two executors' numbers are bit-identical.  Skipped without Ray (CI
installs it: the `ray` extra)."""

from __future__ import annotations

import csv
import json
from dataclasses import replace

import pytest

ray = pytest.importorskip("ray")

import coinrun_mg  # noqa: E402, F401 - registers the env ids
from coinrun_mg import cli, executors  # noqa: E402
from coinrun_mg.agents import PROFILES  # noqa: E402
from coinrun_mg.executors import RayExecutor  # noqa: E402
from coinrun_mg.sweep import FAIL_ENV, run_sweep  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = dict(
    num_envs=16,
    num_steps=16,
    minibatch_size=64,
    max_episode_steps=20,
    checkpoint_every=0,
)
# Values that differ between two sweeps of the same runs: where and how long.
NOT_COMPARED = {"run_dir", "checkpoint", "reference", "train_seconds", "eval_seconds"}


def _sweep(out_dir, **kwargs):
    settings = dict(
        total_steps=512, episodes=16, device="cpu", overrides=TINY, hook_episodes=8, log=None
    )
    settings.update(kwargs)
    return run_sweep((0.0, 0.5), [0], "quick", out_dir, **settings)


def _start_ray():
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)


@pytest.fixture(scope="module", autouse=True)
def _shutdown_ray_at_the_end():
    yield
    if ray.is_initialized():
        ray.shutdown()


@pytest.fixture
def ray_instance():
    """A local 2-CPU Ray instance shared by the tests that use it (started once)."""
    _start_ray()


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_ctrl_c_stops_the_ray_sweep_and_the_same_command_resumes(tmp_path, monkeypatch, capsys):
    if ray.is_initialized():  # this test starts (and must stop) its own instance
        ray.shutdown()
    # The CLI's quick profile, tiny (the runs get the PPOConfig built here).
    monkeypatch.setitem(PROFILES, "quick", {**PROFILES["quick"], **TINY})
    args = ["sweep", "--fractions", "0,0.5", "--seeds", "1", "--total-steps", "512"]
    args += ["--episodes", "16", "--hook-episodes", "0", "--device", "cpu"]
    args += ["--executor", "ray", "--workers", "2", "--out", str(tmp_path)]

    # Ctrl-C while the driver waits for the second run, the first one finished.
    real_next = RayExecutor.next_result
    calls = []

    def interrupted(self):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_next(self)

    monkeypatch.setattr(RayExecutor, "next_result", interrupted)
    assert cli.main(args) == 130
    assert "interrupted" in capsys.readouterr().err
    assert not ray.is_initialized()  # the instance the sweep started is shut down
    assert not (tmp_path / "report.json").exists()
    finished = [p.parent for p in (tmp_path / "runs").glob("*/result.json")]
    assert len(finished) == 1
    checkpoint = finished[0] / "checkpoint.pt"
    stamp = checkpoint.stat().st_mtime_ns

    # The same command again: the finished run is not retrained, the other one is done.
    monkeypatch.setattr(RayExecutor, "next_result", real_next)
    _start_ray()  # shared with the next tests (the sweep leaves an instance it did not start)
    assert cli.main(args) == 0
    assert checkpoint.stat().st_mtime_ns == stamp
    report = json.loads((tmp_path / "report.json").read_text())
    assert [(r["rand_fraction"], r["status"]) for r in report["runs"]] == [
        (0.0, "done"),
        (0.5, "done"),
    ]
    assert all(r["filtered"] and r["global_step"] == 512 for r in report["runs"])
    assert ray.is_initialized()


def test_ray_sweep_equals_the_local_sweep(tmp_path, ray_instance):
    local = _sweep(tmp_path / "local")
    # shared_fs=False: the runs' files travel back through Ray and the driver writes them,
    # as on a cluster without a shared filesystem.
    remote = _sweep(tmp_path / "ray", executor=RayExecutor(shared_fs=False))

    assert remote.keys() == local.keys()
    executors_used = (remote["settings"].pop("executor"), local["settings"].pop("executor"))
    assert [e["name"] for e in executors_used] == ["ray", "local"]
    assert remote["settings"] == local["settings"]
    assert remote["failed"] == local["failed"] == []
    assert remote["aggregate"] == local["aggregate"]
    assert len(remote["runs"]) == len(local["runs"]) == 2
    for mine, theirs in zip(remote["runs"], local["runs"]):
        assert mine.keys() == theirs.keys()
        for key in mine.keys() - NOT_COMPARED:
            assert mine[key] == theirs[key], key
        assert mine["filtered"] is True  # evaluated again once the reference existed
        run_dir = tmp_path / "ray" / "runs" / f"f{mine['rand_fraction']:g}_s0"
        assert mine["run_dir"] == str(run_dir)
        assert mine["checkpoint"] == str(run_dir / "checkpoint.pt")
        for name in ("checkpoint.pt", "config.json", "test_episodes.csv", "result.json"):
            assert (run_dir / name).is_file(), name
        assert list(run_dir.glob("events.out.tfevents.*"))

    assert _rows(tmp_path / "ray" / "episodes.csv") == _rows(tmp_path / "local" / "episodes.csv")
    assert (tmp_path / "ray" / "curve.png").is_file()
    assert not (tmp_path / "ray" / executors.TOKEN_NAME).exists()
    assert ray.is_initialized()  # an instance the sweep did not start is left running


def test_ray_sweep_with_budgets_ships_the_kept_checkpoints(tmp_path, ray_instance):
    # shared_fs=False: the fraction-0.5 run is evaluated unfiltered, then again on the good
    # levels in a second task, which needs the budget checkpoints kept by the first.
    budgets = dict(total_steps=768, eval_at=(256, 768), hook_episodes=0)
    local = _sweep(tmp_path / "local", **budgets)
    remote = _sweep(tmp_path / "ray", executor=RayExecutor(shared_fs=False), **budgets)
    assert remote["failed"] == []
    assert remote["budget_aggregate"] == local["budget_aggregate"]
    for mine, theirs in zip(remote["runs"], local["runs"]):
        assert mine["filtered"] is True
        assert mine["budgets"] == theirs["budgets"]  # checkpoints: relative paths
        run_dir = tmp_path / "ray" / "runs" / f"f{mine['rand_fraction']:g}_s0"
        for record in mine["budgets"]:
            assert (run_dir / record["checkpoint"]).is_file()
    rows = _rows(tmp_path / "ray" / "budget_episodes.csv")
    assert rows == _rows(tmp_path / "local" / "budget_episodes.csv") and len(rows) == 64


def test_ray_retries_a_failing_run_and_reports_one_that_keeps_failing(
    tmp_path, ray_instance, monkeypatch
):
    # Injected in the driver and carried by the jobs into Ray's worker processes: run
    # f0.5_s0 fails its first attempt, run f0_s0 every attempt.
    monkeypatch.setenv(FAIL_ENV, "f0.5_s0:1,f0_s0:9")
    report = _sweep(tmp_path, executor="ray", retries=1)

    failed, kept = report["runs"]
    assert (failed["status"], failed["attempts"]) == ("failed", 2)
    assert "injected failure" in failed["error"]
    assert report["failed"] == [
        {
            "rand_fraction": 0.0,
            "seed": 0,
            "error": failed["error"],
            "not_retried": "not retried: retries=1 used up (2 attempts)",
        },
    ]
    assert (kept["status"], kept["attempts"]) == ("done", 2)
    assert kept["filtered"] is False  # no reference: fraction 0 failed
    assert not (tmp_path / "runs" / "f0_s0" / "result.json").exists()
    assert (tmp_path / "runs" / "f0.5_s0" / "result.json").exists()
    by_fraction = {a["rand_fraction"]: a for a in report["aggregate"]}
    assert by_fraction[0.0]["failed_seeds"] == [0]
    assert by_fraction[0.5]["seeds"] == [0]
    rows = _rows(tmp_path / "episodes.csv")
    assert len(rows) == 16 and {r["rand_fraction"] for r in rows} == {"0.5"}

    # A permanent failure (a ValueError in the Ray worker) is not retried.
    monkeypatch.setenv(FAIL_ENV, "f0.5_s0:9:value,f0_s0:9:value")
    messages = []
    report = _sweep(tmp_path / "permanent", executor="ray", retries=2, log=messages.append)
    for run in report["runs"]:
        assert (run["status"], run["attempts"], run["retryable"]) == ("failed", 1, False)
    starts = [m.split()[0] for m in messages if m.split()[1:2] == ["training"]]
    assert sorted(starts) == ["[f0.5_s0]", "[f0_s0]"]  # each said to start once


def test_gpu_per_run_follows_the_device_and_a_local_instance_refuses_missing_gpus(
    tmp_path, ray_instance
):
    executor = RayExecutor()
    job = executors.RunJob(0.0, 0, str(tmp_path), None, 16, 0, None, "cpu", None)
    for cluster_gpus, device, gpus in [
        (0, "cpu", 0),
        (0, "auto", 0),
        (4, "auto", 1),  # the paper profile's default device on a GPU cluster
        (4, "cpu", 0),
        (0, "cuda", 1),
        (4, "cuda:1", 1),
    ]:
        executor._cluster_gpus = cluster_gpus
        assert executor._gpus_for(replace(job, device=device)) == gpus, device
    executor.gpus_per_run = 0.5
    assert executor._gpus_for(job) == 0.5

    # This 2-CPU instance has no GPU: a CUDA run would wait forever, so it is refused.
    with pytest.raises(ValueError, match=r"asks for 1 GPU\(s\).*has 0"):
        _sweep(tmp_path, device="cuda", executor=RayExecutor())
    assert not list((tmp_path / "runs").glob("*/result.json"))
    assert ray.is_initialized()
