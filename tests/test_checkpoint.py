"""Checkpoint files: verified reads (digest, damaged / foreign / unsafe files refused in one
line by the API and the CLI), version-1 files, and the atomic-write helper."""

from __future__ import annotations

import errno
import json
import os
import pickle
import random
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from coinrun_mg import cli
from coinrun_mg.agents import (
    CheckpointError,
    CheckpointWriteError,
    PPOConfig,
    load_policy,
    read_run_config,
    train,
)
from coinrun_mg.agents.checkpoint import (
    CHECKPOINT_NAME,
    CHECKPOINT_VERSION,
    CheckpointWarning,
    payload_digest,
    read_checkpoint,
    write_checkpoint,
)
from coinrun_mg.files import atomic_write, atomic_write_text

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SENTINEL_NAME = "pickle-code-ran"


def tiny_config(**overrides) -> PPOConfig:
    """One iteration of 16 envs x 16 steps by default, short episodes."""
    settings = dict(
        device="cpu",
        num_envs=16,
        num_steps=16,
        minibatch_size=64,
        total_steps=256,
        max_episode_steps=20,
        checkpoint_every=0,
        progress_bar=False,
    )
    return PPOConfig.from_profile("quick", **{**settings, **overrides})


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A run directory with the checkpoint of one tiny training iteration."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    train(tiny_config(), run_dir)
    torch.set_num_threads(before)
    return run_dir


# --- ways a file can be wrong -----------------------------------------------------------


def _flip_bytes_of(tensor: torch.Tensor, path: Path) -> None:
    """Flip one byte inside the stored data of ``tensor`` (found by its raw bytes)."""
    blob = bytearray(path.read_bytes())
    raw = tensor.contiguous().view(torch.uint8).numpy().tobytes()
    at = blob.find(raw)
    assert at >= 0 and len(raw) > 8
    blob[at + len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(blob))


def flipped_weight(path: Path) -> None:
    _flip_bytes_of(read_checkpoint(path)["model"]["actor.weight"], path)


def flipped_level_grid(path: Path) -> None:
    state = read_checkpoint(path)["env"]["state"]
    largest = max((t for t in state.values() if t.numel() > 0), key=lambda t: t.nbytes)
    _flip_bytes_of(largest, path)


def empty(path: Path) -> None:
    path.write_bytes(b"")


def text(path: Path) -> None:
    path.write_text("step,coin_rate\n0,0.5\n")


def truncated(path: Path) -> None:
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])


def foreign(path: Path) -> None:
    torch.save({"weights": torch.zeros(3)}, path)


def newer_version(path: Path) -> None:
    data = read_checkpoint(path)
    data["version"] = CHECKPOINT_VERSION + 1
    torch.save(data, path)


def digest_removed(path: Path) -> None:
    data = read_checkpoint(path)
    del data["digest"]
    torch.save(data, path)


class _RunsCode:
    """Pickles to a call of os.system: what a malicious checkpoint would hold."""

    def __init__(self, sentinel: Path):
        self.sentinel = sentinel

    def __reduce__(self):
        return (os.system, (f"touch {self.sentinel}",))


def malicious_torch_file(path: Path) -> None:
    data = read_checkpoint(path)
    data["config"] = _RunsCode(path.parent / SENTINEL_NAME)
    torch.save(data, path)


def malicious_bare_pickle(path: Path) -> None:
    path.write_bytes(pickle.dumps(_RunsCode(path.parent / SENTINEL_NAME)))


DAMAGES = {
    "flipped weight": (flipped_weight, "do not match the digest"),
    "flipped level grid": (flipped_level_grid, "do not match the digest"),
    "empty": (empty, "is empty"),
    "text": (text, "not a coinrun-mg PPO checkpoint"),
    "truncated": (truncated, "truncated or damaged"),
    "foreign torch file": (foreign, "not a coinrun-mg PPO checkpoint"),
    "newer version": (newer_version, f"version {CHECKPOINT_VERSION + 1}.*upgrade"),
    "no digest": (digest_removed, "no digest"),
    "malicious torch file": (malicious_torch_file, "Python objects .*refused.*unsafe"),
    "malicious bare pickle": (malicious_bare_pickle, "not a coinrun-mg PPO checkpoint"),
}


@pytest.fixture(params=list(DAMAGES))
def damaged(request, trained, tmp_path) -> tuple[Path, str]:
    """A run directory whose checkpoint is damaged in one way, and the expected message."""
    damage, message = DAMAGES[request.param]
    run_dir = tmp_path / "run"
    shutil.copytree(trained, run_dir)
    damage(run_dir / CHECKPOINT_NAME)
    return run_dir, message


def _assert_one_line_naming(message: str, path: Path, expected: str) -> None:
    assert "\n" not in message.strip() and str(path) in message, message
    assert "weights_only" not in message and "Traceback" not in message, message
    assert re.search(expected, message), message


# --- API ---------------------------------------------------------------------------------


def test_damaged_checkpoints_are_refused_in_one_line(damaged):
    run_dir, expected = damaged
    path = run_dir / CHECKPOINT_NAME
    for read in (
        lambda: load_policy(path, device="cpu"),
        lambda: load_policy(run_dir, device="cpu"),
        lambda: read_run_config(run_dir),
        lambda: train(None, run_dir, resume=True),
    ):
        with pytest.raises(CheckpointError) as info:
            read()
        _assert_one_line_naming(str(info.value), path, expected)
    assert isinstance(info.value, ValueError)
    assert not (run_dir / SENTINEL_NAME).exists()  # no pickled code ran


def test_randomly_flipped_bytes_are_refused(trained, tmp_path):
    """200 flipped bits anywhere in the file (the user's report), ten times over."""
    good = (trained / CHECKPOINT_NAME).read_bytes()
    path = tmp_path / "flipped.pt"
    rng = random.Random(0)
    for _ in range(10):
        blob = bytearray(good)
        for _ in range(200):
            blob[rng.randrange(len(blob))] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(blob))
        with pytest.raises(CheckpointError) as info:
            read_checkpoint(path)
        _assert_one_line_naming(str(info.value), path, ".")


def test_good_checkpoint_round_trips_with_its_digest(trained, tmp_path):
    path = trained / CHECKPOINT_NAME
    plain = torch.load(path, weights_only=True)  # still a plain torch file
    assert plain["version"] == CHECKPOINT_VERSION
    assert plain["digest"] == payload_digest(plain)

    data = read_checkpoint(trained)
    payload = {k: v for k, v in data.items() if k not in ("format", "version", "digest")}
    copy = tmp_path / "copy.pt"
    write_checkpoint(payload, copy)
    again = read_checkpoint(copy)
    assert again["digest"] == data["digest"]
    for name, weight in data["model"].items():
        assert torch.equal(again["model"][name], weight), name
    assert read_run_config(trained) == PPOConfig.from_dict(data["config"])
    policy = load_policy(copy, device="cpu", deterministic=True)
    obs = torch.zeros((3, *policy.obs_shape), dtype=torch.uint8)
    assert policy(obs).shape == (3,)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    # Verified on the CPU, then moved whole to the device asked for (as map_location did).
    moved = read_checkpoint(copy, device="meta")
    assert (
        type(moved["model"]) is type(data["model"])
        and moved["model"].keys() == data["model"].keys()
    )
    assert all(t.device.type == "meta" for t in moved["model"].values())
    assert moved["rng"]["sample"].device.type == "meta" and moved["config"] == data["config"]


def test_version_1_checkpoint_loads_with_a_warning(trained, tmp_path):
    data = read_checkpoint(trained)
    del data["digest"]
    data["version"] = 1
    old = tmp_path / "v1.pt"
    torch.save(data, old)
    with pytest.warns(CheckpointWarning, match=r"v1\.pt is a version-1 .*cannot be verified"):
        policy = load_policy(old, device="cpu")
    assert policy.config == PPOConfig.from_dict(data["config"])


def test_digest_is_canonical_and_sees_values_shapes_and_types():
    weights = torch.arange(6, dtype=torch.float32)
    base = {"a": weights, "b": {1: [0.5, "x", None, True], 0: b"raw"}}
    reordered = {"b": {0: b"raw", 1: [0.5, "x", None, True]}, "a": weights.clone()}
    assert payload_digest(base) == payload_digest(reordered)
    assert payload_digest(base) == payload_digest({**base, "digest": "ignored"})
    changes = (
        {**base, "a": weights.reshape(2, 3)},  # same bytes, other shape
        {**base, "a": weights.to(torch.int32)},
        {**base, "a": weights + torch.tensor([0, 0, 0, 1e-6, 0, 0])},
        {**base, "b": {1: [0.5, "x", None, 1], 0: b"raw"}},  # True -> 1
        {**base, "b": {1: [0.5, "x", None, True], "0": b"raw"}},  # key 0 -> "0"
    )
    digests = {payload_digest(base)} | {payload_digest(c) for c in changes}
    assert len(digests) == 1 + len(changes)
    with pytest.raises(TypeError, match="cannot hold a set"):
        payload_digest({"a": {1, 2}})


# --- CLI -----------------------------------------------------------------------------------


def test_cli_eval_video_and_train_refuse_damaged_checkpoints(damaged, capsys, tmp_path):
    run_dir, expected = damaged
    path = run_dir / CHECKPOINT_NAME
    before = path.read_bytes()
    commands = {
        "eval": ["eval", str(path), "--episodes", "2", "--device", "cpu"],
        "video": ["video", str(path), "--episodes", "1", "--out", str(tmp_path / "videos")],
        "train": ["train", "--resume", "--run-dir", str(run_dir), "--device", "cpu"],
    }
    for name, argv in commands.items():
        assert cli.main(argv) == 2, name
        err = capsys.readouterr().err
        assert err.startswith(f"coinrun-mg {name}: error: "), err
        _assert_one_line_naming(err, path, expected)
    assert path.read_bytes() == before  # train --resume did not write over it
    assert not (run_dir / SENTINEL_NAME).exists()


def test_cli_eval_of_a_flipped_byte_exits_2_without_traceback(trained, tmp_path):
    path = tmp_path / CHECKPOINT_NAME
    shutil.copy(trained / CHECKPOINT_NAME, path)
    flipped_weight(path)
    done = subprocess.run(
        [sys.executable, "-m", "coinrun_mg", "eval", str(path), "--episodes", "2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("coinrun-mg eval: error: ") and "Traceback" not in done.stderr
    _assert_one_line_naming(done.stderr, path, "do not match the digest")


# --- atomic writes -----------------------------------------------------------------------


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "report.json"
    atomic_write_text(path, "old\n")

    def half_then_fail(f):
        f.write(b"new, but only ha")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, half_then_fail)
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temporary left

    atomic_write_text(path, "new\n")
    assert path.read_text() == "new\n"
    atomic_write(path, lambda f: json.dump({"coin": "ü"}, f), text=True)  # a text file
    assert json.loads(path.read_text(encoding="utf-8")) == {"coin": "ü"}
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]
    # A folder that is not there: the error names the file asked for, not the temporary.
    with pytest.raises(FileNotFoundError) as caught:
        atomic_write_text(tmp_path / "missing" / "report.json", "x")
    assert caught.value.filename == str(tmp_path / "missing" / "report.json")


def test_no_warning_for_a_good_checkpoint(trained):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_checkpoint(trained)


def test_a_full_disk_keeps_the_last_checkpoint_and_the_run_resumes(tmp_path, monkeypatch, capsys):
    from coinrun_mg.agents import checkpoint
    from coinrun_mg.executors import _retryable

    real_write = checkpoint.atomic_write_bytes
    writes = []

    def fills_the_disk(path, data):  # the second checkpoint write finds the disk full
        writes.append(path)
        if len(writes) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(path, data)

    config = tiny_config(total_steps=1024, checkpoint_every=512)
    uninterrupted = train(config, tmp_path / "a")
    monkeypatch.setattr(checkpoint, "atomic_write_bytes", fills_the_disk)
    with pytest.raises(CheckpointWriteError) as caught:
        train(config, tmp_path / "b")
    assert caught.value.errno == errno.ENOSPC
    assert _retryable(caught.value)[0] is False  # a sweep does not retry a full disk
    assert str(caught.value) == (
        f"could not write the checkpoint {tmp_path / 'b' / CHECKPOINT_NAME}: No space left on "
        "device; the one before it, if any, is kept"
    )
    assert read_checkpoint(tmp_path / "b")["global_step"] == 512  # the first one, intact
    assert not [p for p in (tmp_path / "b").iterdir() if p.name.endswith(".tmp")]

    # The command says it in one line, with the command that resumes.
    writes.clear()
    args = ["train", "--run-dir", str(tmp_path / "c"), "--profile", "quick", "--no-progress"]
    args += ["--device", "cpu", "--num-envs", "16", "--num-steps", "16", "--minibatch-size", "64"]
    args += ["--total-steps", "1024", "--max-episode-steps", "20", "--checkpoint-every", "512"]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err
    assert err.rstrip().endswith(
        f"resume with: coinrun-mg train --run-dir {tmp_path / 'c'} --resume"
    )

    # Space freed: the run resumes from step 512 and ends as if nothing happened.
    monkeypatch.setattr(checkpoint, "atomic_write_bytes", real_write)
    resumed = train(config, tmp_path / "b", resume=True)
    a, b = uninterrupted.agent.state_dict(), resumed.agent.state_dict()
    assert all(torch.equal(a[name], b[name]) for name in a)
