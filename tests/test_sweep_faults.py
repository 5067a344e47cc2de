"""Sweeps under faults, and what their outputs say: one sweep at a time per output folder
(a held lock refuses a second sweep, a dead sweep's lock is taken over), an unwritable
folder refused before any training, retries only for failures a retry can fix, the
settings recorded in report.json, the labels of one-seed and no-reference sweeps, and the
"queued" / "training" messages.  Tiny budgets, as in tests/test_sweep.py; most failing
runs here fail before training (fault injection), so they cost nothing."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import matplotlib.figure
import pytest

import coinrun_mg  # noqa: F401 - registers the env ids
from coinrun_mg import cli, sweep
from coinrun_mg.agents import PROFILES
from coinrun_mg.executors import _retryable
from coinrun_mg.sweep import FAIL_ENV, run_sweep
from coinrun_mg.sweep_lock import LOCK_NAME, SweepError
from coinrun_mg.sweep_report import ALL_LEVELS, GOOD_LEVELS, MIXED_LEVELS, aggregate, table_note

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = dict(
    num_envs=16,
    num_steps=16,
    minibatch_size=64,
    max_episode_steps=20,
    checkpoint_every=0,
)


def _sweep(out_dir, fractions=(0.5,), seeds=(0,), **kwargs):
    settings = dict(
        total_steps=512, episodes=16, device="cpu", overrides=TINY, hook_episodes=0, log=None
    )
    settings.update(kwargs)
    return run_sweep(fractions, list(seeds), "quick", out_dir, **settings)


def _cli_sweep(out_dir, *extra):
    args = ["sweep", "--fractions", "0.5", "--seeds", "1", "--total-steps", "512"]
    args += ["--episodes", "16", "--hook-episodes", "0", "--device", "cpu"]
    return cli.main([*args, "--out", str(out_dir), *extra])


def _run_dirs(out_dir):
    runs = out_dir / "runs"
    return sorted(p.name for p in runs.iterdir()) if runs.exists() else []


# --- one sweep at a time ----------------------------------------------------------------


HOLDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from coinrun_mg.sweep_lock import locked

    with locked(Path(sys.argv[1]), print):
        print("locked", flush=True)
        sys.stdin.read()  # hold it until the test closes our stdin
    """
)


def test_a_second_sweep_into_a_locked_folder_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(PROFILES, "quick", {**PROFILES["quick"], **TINY})
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        assert _cli_sweep(tmp_path) == 2
        assert time.monotonic() - started < 10
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"coinrun-mg sweep: error: {tmp_path} is in use by another sweep")
        assert len(err.splitlines()) == 1
        assert f"pid {holder.pid} on {socket.gethostname()}, since 20" in err
        assert _run_dirs(tmp_path) == []  # refused before any run
        with pytest.raises(SweepError, match=f"pid {holder.pid}"):
            _sweep(tmp_path)
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert holder.returncode == 0
    assert not (tmp_path / LOCK_NAME).exists()  # released: removed by its holder


def test_the_lock_of_a_sweep_that_died_is_taken_over(tmp_path, monkeypatch):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = {"pid": dead.pid, "host": socket.gethostname(), "since": 0.0, "command": "x"}
    (tmp_path / LOCK_NAME).write_text(json.dumps(stale))
    monkeypatch.setenv(FAIL_ENV, "f0.5_s0:1:value")  # the run fails at once: no training
    messages = []

    report = _sweep(tmp_path, log=messages.append)
    assert (tmp_path / "report.json").exists() and len(report["runs"]) == 1
    assert any("taking over" in m and f"pid {dead.pid}" in m for m in messages)
    assert not (tmp_path / LOCK_NAME).exists()
    _sweep(tmp_path)  # and the folder is free again afterwards


# --- an unwritable output folder ----------------------------------------------------------


def _unwritable(tmp_path, how):
    if how == "under a file":
        blocker = tmp_path / "a-file"
        blocker.write_text("not a folder\n")
        return blocker / "out"
    out = tmp_path / "read-only"
    out.mkdir()
    out.chmod(0o500)
    try:  # root (and some file systems) write anyway: then this case cannot be made here
        (out / "probe").write_text("x")
    except OSError:
        return out
    (out / "probe").unlink()
    out.chmod(0o700)
    pytest.skip("chmod 0o500 does not stop writing here (running as root?)")


@pytest.mark.parametrize("how", ["under a file", "read-only"])
def test_an_unwritable_folder_fails_once_before_any_training(tmp_path, capsys, how):
    out = _unwritable(tmp_path, how)
    try:
        started = time.monotonic()
        assert _cli_sweep(out) == 2
        assert time.monotonic() - started < 10
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"coinrun-mg sweep: error: cannot write to {out}: ")
        assert len(err.splitlines()) == 1
        assert not (out / "runs").exists() or _run_dirs(out) == []
        with pytest.raises(SweepError, match="cannot write to"):
            _sweep(out)
    finally:
        if out.exists():
            out.chmod(0o700)


# --- retries only where a retry can help -------------------------------------------------


@pytest.mark.parametrize(
    "exc, retryable",
    [
        (None, True),  # the run's process or node died
        (RuntimeError("a crash"), True),
        (OSError(errno.EIO, "input/output error"), True),
        (ConnectionError("the node went away"), True),
        (ValueError("a bad setting"), False),
        (ModuleNotFoundError("no module named x"), False),
        (PermissionError(errno.EACCES, "permission denied"), False),
        (OSError(errno.EROFS, "read-only file system"), False),
        (OSError(errno.ENOSPC, "no space left on device"), False),
    ],
)
def test_retryable_tells_transient_from_permanent_failures(exc, retryable):
    assert _retryable(exc)[0] is retryable


def test_a_permanent_failure_is_not_retried_a_transient_one_is(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(FAIL_ENV, "f0.5_s0:9:value")
    report = _sweep(tmp_path / "permanent", retries=3)
    (run,) = report["runs"]
    assert (run["status"], run["attempts"], run["retried"]) == ("failed", 1, False)
    assert run["retryable"] is False and "ValueError: injected failure" in run["error"]
    assert "bad setting" in run["not_retried"]
    assert report["failed"][0]["not_retried"] == run["not_retried"]

    monkeypatch.setenv(FAIL_ENV, "f0.5_s0:9")  # a crash, every time: retried, then reported
    report = _sweep(tmp_path / "transient", retries=2)
    (run,) = report["runs"]
    assert (run["status"], run["attempts"], run["retried"]) == ("failed", 3, True)
    assert run["not_retried"] == "not retried: retries=2 used up (3 attempts)"

    # The CLI says why a failure was not retried.
    monkeypatch.setenv(FAIL_ENV, "f0.5_s0:1:value")
    assert _cli_sweep(tmp_path / "cli", "--retries", "3") == 1
    out = capsys.readouterr().out
    assert "FAILED f=0.5 seed=0: ValueError: injected failure" in out and "not retried" in out


def test_bad_fault_injection_kind_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv(FAIL_ENV, "f0.5_s0:1:explode")
    with pytest.raises(ValueError, match="KIND one of"):
        _sweep(tmp_path)


# --- settings, labels and messages of a real sweep ---------------------------------------


def test_one_seed_without_a_reference_labels_and_messages(tmp_path, monkeypatch):
    legends = []

    def keep_labels(fig, *args, **kwargs):
        ax = fig.axes[0]
        legends.append(([t.get_text() for t in ax.get_legend().get_texts()], ax.get_ylabel()))

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", keep_labels)
    messages = []
    report = _sweep(tmp_path, fractions=(0.2, 0.5), torch_threads=1, log=messages.append)

    # One run after another in this process: the second is queued while the first trains.
    said = [" ".join(m.split()[:2]).rstrip(":") for m in messages]
    assert said == [
        "[f0.2_s0] queued",
        "[f0.5_s0] queued",
        "[f0.2_s0] training",
        "[f0.2_s0] done",
        "[f0.5_s0] training",
        "[f0.5_s0] done",
    ]
    assert messages[2] == f"[f0.2_s0] training and evaluating in {tmp_path / 'runs' / 'f0.2_s0'}"

    settings = json.loads((tmp_path / "report.json").read_text())["settings"]
    assert settings["torch_threads"] == 1 and settings["retries"] == 1
    assert settings["executor"] == {"name": "local", "workers": 1, "torch_threads_per_run": None}

    # No fraction 0: no reference, the tests are on all levels; one seed: Wilson intervals.
    assert report["test_levels"] == ALL_LEVELS
    assert "episodes" in report["interval"]
    for entry in report["aggregate"]:
        assert (entry["test_levels"], entry["interval"]) == (ALL_LEVELS, "episodes")
    note = table_note(report["aggregate"])
    assert "over episodes" in note and "across seeds" not in note
    assert "all levels (no fraction-0 reference)" in note and GOOD_LEVELS + "," not in note
    (labels, ylabel) = legends[-1]
    assert all("all levels" in label for label in labels if label.startswith("test"))
    assert "over episodes" in ylabel


def test_an_unreadable_result_marker_is_named_and_the_run_resumed(tmp_path):
    _sweep(tmp_path)
    run = tmp_path / "runs" / "f0.5_s0"
    marker = run / "result.json"
    done = json.loads(marker.read_text())
    marker.write_text(marker.read_text()[:40])  # cut short, as by a full disk
    trained = (run / "checkpoint.pt").stat().st_mtime_ns
    messages = []
    report = _sweep(tmp_path, log=messages.append)
    assert f"[f0.5_s0] queued: training and evaluating; {marker} is not readable JSON" in (
        " ".join(messages)
    )
    assert "settings changed" not in " ".join(messages)
    # Its checkpoint had reached the budget: evaluated again, the same result, no retraining.
    (entry,) = report["runs"]
    assert entry["test"] == done["test"] and json.loads(marker.read_text())["test"] == done["test"]
    assert (run / "checkpoint.pt").stat().st_mtime_ns == trained
    assert not list(tmp_path.glob("runs/*.replaced-*"))


def test_labels_across_seeds_and_with_mixed_references():
    def run(seed, filtered):
        section = {"goal_rate": 0.5, "goal_ci": [0.4, 0.6], "proxy_rate": 0.5}
        return {
            "rand_fraction": 0.2,
            "seed": seed,
            "status": "done",
            "filtered": filtered,
            "train": {"coin_rate": 0.5},
            "test": section,
            "test_all": section,
        }

    good = aggregate([run(0, True), run(1, True)])
    assert (good[0]["interval"], good[0]["test_levels"]) == ("seeds", GOOD_LEVELS)
    note = table_note(good)
    assert note.startswith("(mean [95% interval across seeds]")
    assert "seed rows: that run's Wilson interval over episodes" in note
    assert f"test: {GOOD_LEVELS}," in note
    mixed = aggregate([run(0, True), run(1, False)])
    assert mixed[0]["test_levels"] == MIXED_LEVELS and MIXED_LEVELS in table_note(mixed)


def test_cli_records_torch_threads(tmp_path, monkeypatch, capsys):
    calls = []

    def fake_run_sweep(fractions, seeds, **kwargs):
        calls.append(kwargs)
        return {"aggregate": aggregate([]), "runs": [], "failed": []}

    monkeypatch.setattr(sweep, "run_sweep", fake_run_sweep)
    assert cli.main(["sweep", "--torch-threads", "3", "--out", str(tmp_path)]) == 0
    assert calls[-1]["torch_threads"] == 3
    assert cli.main(["sweep", "--out", str(tmp_path)]) == 0
    assert calls[-1]["torch_threads"] == 0
    capsys.readouterr()
    monkeypatch.undo()
    assert cli.main(["sweep", "--torch-threads", "-1", "--out", str(tmp_path)]) == 2
    assert "torch_threads=-1 is invalid" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "runs")
