"""`coinrun-mg train` and `train()` under faults: a used run directory, Ctrl-C, a num_envs
too large for memory, --eval-every, the CPU default profile, one spelling of shared
options, the examples' --help.  Tiny runs: 8 envs x 16 steps per iteration."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from coinrun_mg import cli
from coinrun_mg.agents import PPOConfig, TrainingHook, TrainingInterrupted, train
from coinrun_mg.agents.ppo import CHECKPOINT_NAME
from coinrun_mg.envs import CoinRunConfig, CoinRunCore, malloc
from coinrun_mg.envs.coinrun.memory import bytes_per_env, check_num_envs, observation_bytes
from coinrun_mg.eval import GOAL_PROXY_KEYS

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "device": "cpu",
    "num_envs": 8,
    "num_steps": 16,
    "minibatch_size": 64,
    "max_episode_steps": 20,
    "rand_fraction": 0.5,
    "checkpoint_every": 128,
    "seed": 2,
}


def tiny_args(run_dir: Path, total_steps: int = 128, profile: str | None = "quick") -> list[str]:
    args = ["train", "--run-dir", str(run_dir), "--total-steps", str(total_steps)]
    args += ["--no-progress", "--torch-threads", "1"]
    if profile:
        args += ["--profile", profile]
    for name, value in TINY.items():
        args += ["--" + name.replace("_", "-"), str(value)]
    return args


def event_files(run_dir: Path) -> list[Path]:
    return sorted(run_dir.glob("events.out.tfevents.*"))


# --- run directories ----------------------------------------------------------------


def test_train_refuses_a_used_run_dir_and_overwrite_moves_it_aside(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert cli.main(tiny_args(run_dir)) == 0
    old_checkpoint = (run_dir / CHECKPOINT_NAME).read_bytes()
    (old_events,) = event_files(run_dir)
    capsys.readouterr()

    assert cli.main(tiny_args(run_dir)) == 2
    out, err = capsys.readouterr()
    assert "training" not in out  # refused before the run is announced
    err = err.strip()
    assert err.startswith("coinrun-mg train: error: run_dir") and len(err.splitlines()) == 1
    assert "--resume" in err and "--overwrite" in err
    assert (run_dir / CHECKPOINT_NAME).read_bytes() == old_checkpoint  # untouched
    assert event_files(run_dir) == [old_events]

    assert cli.main([*tiny_args(run_dir), "--overwrite"]) == 0
    out = capsys.readouterr().out
    (aside,) = tmp_path.glob("run.replaced-*")
    assert str(aside) in out
    assert (aside / CHECKPOINT_NAME).read_bytes() == old_checkpoint
    assert [p.name for p in event_files(aside)] == [old_events.name]
    (new_events,) = event_files(run_dir)  # the new run's own log only
    assert new_events.name != old_events.name
    assert (run_dir / CHECKPOINT_NAME).exists()


def test_resume_without_a_checkpoint_moves_the_old_logs_aside(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    # A run killed before its first checkpoint: a config and an event file, no checkpoint.
    (run_dir / "config.json").write_text("{}\n")
    (run_dir / "events.out.tfevents.1.killed.0").write_bytes(b"old")
    (run_dir / "notes.txt").write_text("mine")
    config = PPOConfig.from_profile("quick", total_steps=128, progress_bar=False, **TINY)
    train(config, run_dir, resume=True)
    (aside,) = tmp_path.glob("run.replaced-*")
    assert (aside / "events.out.tfevents.1.killed.0").read_bytes() == b"old"
    assert (aside / "config.json").read_text() == "{}\n"
    assert [p.name for p in event_files(run_dir)] != ["events.out.tfevents.1.killed.0"]
    assert len(event_files(run_dir)) == 1
    assert (run_dir / "notes.txt").read_text() == "mine"  # not a run file: left in place
    with pytest.raises(ValueError, match="exclude each other"):
        train(config, run_dir, resume=True, overwrite=True)


# --- Ctrl-C -----------------------------------------------------------------------------


@pytest.fixture
def ctrl_c_as_at_a_terminal():
    """SIGINT raises KeyboardInterrupt, even where the runner ignores it (a background job);
    a child started meanwhile gets the default SIGINT at exec, and Python's handler."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.usefixtures("ctrl_c_as_at_a_terminal")
def test_ctrl_c_saves_a_checkpoint_and_the_resumed_run_is_bit_identical(tmp_path):
    total = 16 * 128
    interrupted = tmp_path / "interrupted"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "coinrun_mg"]
    proc = subprocess.Popen(
        command + tiny_args(interrupted, total),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    deadline = time.time() + 120
    while not (interrupted / CHECKPOINT_NAME).exists():  # the first iteration is done
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err
    hint = err.strip().splitlines()[-1]
    resume_command = f"coinrun-mg train --run-dir {interrupted} --resume"
    assert hint.startswith("coinrun-mg train: interrupted at step")
    assert hint.endswith(resume_command) and str(interrupted / CHECKPOINT_NAME) in hint
    step = int(hint.split("at step ")[1].split(";")[0])
    saved = torch.load(interrupted / CHECKPOINT_NAME, weights_only=True)
    assert saved["global_step"] == step and 128 <= step < total

    resumed = subprocess.run(
        command + resume_command.split()[1:], capture_output=True, text=True, env=env
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {interrupted}" in resumed.stdout

    config = PPOConfig.from_profile(
        "quick", total_steps=total, torch_threads=1, progress_bar=False, **TINY
    )
    train(config, tmp_path / "uninterrupted")
    a = torch.load(tmp_path / "uninterrupted" / CHECKPOINT_NAME, weights_only=True)
    b = torch.load(interrupted / CHECKPOINT_NAME, weights_only=True)
    assert b["global_step"] == a["global_step"] == total
    assert a["model"].keys() == b["model"].keys()
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name
    assert not torch.equal(saved["model"]["actor.weight"], b["model"]["actor.weight"])


class SelfInterrupt(TrainingHook):
    """Presses Ctrl-C (SIGINT to this process) at its step."""

    def __init__(self, step: int, presses: int = 1):
        self.every_steps = step
        self.presses = presses

    def __call__(self, step, policy, writer):
        for _ in range(self.presses):
            os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.usefixtures("ctrl_c_as_at_a_terminal")
def test_train_stops_on_ctrl_c_with_a_checkpoint_and_restores_the_handler(tmp_path):
    config = PPOConfig.from_profile("quick", total_steps=512, progress_bar=False, **TINY)
    config = config.replace(checkpoint_every=0)  # only the interrupt writes one
    with pytest.raises(TrainingInterrupted) as stopped:
        train(config, tmp_path / "run", hooks=[SelfInterrupt(256)])
    assert isinstance(stopped.value, KeyboardInterrupt)  # sweeps stop on it as before
    assert stopped.value.global_step == 256
    assert stopped.value.checkpoint == tmp_path / "run" / CHECKPOINT_NAME
    assert torch.load(stopped.value.checkpoint, weights_only=True)["global_step"] == 256
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

    # A second Ctrl-C stops at once: inside the hook, before any checkpoint is written.
    with pytest.raises(KeyboardInterrupt) as stopped:
        train(config, tmp_path / "twice", hooks=[SelfInterrupt(256, presses=2)])
    assert not isinstance(stopped.value, TrainingInterrupted)
    assert not (tmp_path / "twice" / CHECKPOINT_NAME).exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

    # A process that ignores Ctrl-C (a sweep's worker) keeps ignoring it.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        result = train(
            config.replace(total_steps=384), tmp_path / "other", hooks=[SelfInterrupt(128)]
        )
        assert result.global_step == 384
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


# --- memory -----------------------------------------------------------------------------


def test_a_num_envs_too_large_for_memory_is_refused_up_front(tmp_path, capsys):
    run_dir = tmp_path / "run"
    args = tiny_args(run_dir)
    args[args.index("--num-envs") + 1] = str(10**10)
    started = time.time()
    assert cli.main(args) == 2
    assert time.time() - started < 10
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "num_envs=10000000000 needs at least" in err
    assert "but cpu has" in err and "available" in err
    assert not run_dir.exists()  # refused before anything was written

    # Evaluation: the same check where its core is built.
    assert cli.main(tiny_args(run_dir)) == 0
    capsys.readouterr()
    eval_args = ["eval", str(run_dir), "--episodes", str(10**10), "--num-envs", str(10**10)]
    assert cli.main([*eval_args, "--device", "cpu", "--no-progress"]) == 2
    assert "num_envs=10000000000 needs at least" in capsys.readouterr().err


def test_memory_estimate_names_the_device_and_counts_the_rollout():
    pixels = observation_bytes("pixels")
    assert pixels == 64 * 64 * 3
    assert observation_bytes("symbolic", 13) < pixels
    assert bytes_per_env(pixels, num_steps=256) > 256 * pixels
    check_num_envs(64, pixels, torch.device("cuda"), 256, available=10 * 2**30)  # fits
    with pytest.raises(ValueError, match=r"num_envs=100000 needs at least .* but cuda has 1 GiB"):
        check_num_envs(100_000, pixels, torch.device("cuda"), 256, available=2**30)


@pytest.mark.skipif(malloc._glibc_mallopt() is None, reason="glibc only")
def test_malloc_warning_does_not_ask_for_a_call_already_made(monkeypatch):
    monkeypatch.setattr(malloc, "_warned_about_malloc", False)
    monkeypatch.setattr(malloc, "_tuned_to", 1 << 20)  # tuned, with a 1 MiB limit
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        CoinRunCore(128, CoinRunConfig(obs_mode="pixels"), device="cpu")  # 1.5 MiB
    (warning,) = caught
    message = str(warning.message)
    assert "first" not in message and "limit of 1 MiB" in message


# --- evaluation while training ----------------------------------------------------------


def test_eval_every_logs_goal_and_proxy_rates(tmp_path, capsys):
    run_dir = tmp_path / "run"
    args = [*tiny_args(run_dir, total_steps=256), "--eval-every", "128", "--eval-episodes", "4"]
    assert cli.main(args) == 0
    events = EventAccumulator(str(run_dir))
    events.Reload()
    for key in GOAL_PROXY_KEYS:
        assert [e.step for e in events.Scalars(key)] == [128, 256], key

    gym_args = [*tiny_args(tmp_path / "gym"), "--env-id", "coinrun_mg/CoinRun-v0"]
    assert cli.main([*gym_args, "--eval-every", "128"]) == 2
    assert "native env only" in capsys.readouterr().err


# --- defaults and spellings -------------------------------------------------------------


def test_train_without_profile_on_a_cpu_uses_quick_and_says_so(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    run_dir = tmp_path / "run"
    assert cli.main(tiny_args(run_dir, profile=None)) == 0
    out = capsys.readouterr().out
    assert "no --profile on cpu: training the quick profile" in out
    assert "device=cpu" in out and "device=auto" not in out
    saved = torch.load(run_dir / CHECKPOINT_NAME, weights_only=True)["config"]
    assert (saved["obs_mode"], saved["network"]) == ("symbolic", "mlp")


def test_step_counts_take_k_and_m_as_eval_at_does(capsys):
    parse = cli.build_parser().parse_args
    args = parse(
        ["train", "--total-steps", "2.5M", "--checkpoint-every", "500k", "--eval-every", "0"]
    )
    assert (args.total_steps, args.checkpoint_every, args.eval_every) == (2_500_000, 500_000, 0)
    with pytest.raises(SystemExit):
        parse(["train", "--checkpoint-every", "1.5"])  # not a whole count
    assert "--checkpoint-every: steps value '1.5' is invalid" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "eval", "video"])
def test_commands_spell_shared_options_alike(command, capsys):
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    out = capsys.readouterr().out
    assert "--no-progress " in out and "--progress-bar" not in out
    if command != "train":
        assert "(default auto)" in out


@pytest.mark.parametrize("script", ["train_ppo.py", "train_sb3.py"])
def test_examples_print_help_and_exit(script):
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    for option in ("--resume", "--total-steps", "--run-dir"):
        assert option in result.stdout
