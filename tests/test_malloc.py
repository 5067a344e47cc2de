"""glibc malloc tuning for large CPU batches (envs/malloc.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from coinrun_mg.envs import malloc
from coinrun_mg.envs.coinrun.config import CoinRunConfig
from coinrun_mg.envs.coinrun.core import CoinRunCore

ON_GLIBC = malloc._glibc_mallopt() is not None
needs_glibc = pytest.mark.skipif(not ON_GLIBC, reason="the process does not run on glibc")

# Allocates and frees a 48 MiB tensor (pixels at 4,096 envs) 15 times and reports the
# minor page faults of the last five rounds, with or without tune_malloc() first.
_FAULTS = """
import json, resource, sys, torch
from coinrun_mg.envs.malloc import tune_malloc
tuned = tune_malloc() if sys.argv[1] == "tuned" else False
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):  # the heap settles on a few such blocks, then reuses them
    torch.empty(48 << 20, dtype=torch.uint8).fill_(1)
before = faults()
for _ in range(5):
    torch.empty(48 << 20, dtype=torch.uint8).fill_(1)
print(json.dumps({"tuned": tuned, "faults": faults() - before}))
"""


def _faults(mode: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("value", [True, 1.5, "1GiB"])
def test_tune_malloc_rejects_non_integers(value):
    with pytest.raises(TypeError, match="max_block_bytes"):
        malloc.tune_malloc(value)


@pytest.mark.parametrize("value", [0, (1 << 20) - 1, 2**31])
def test_tune_malloc_rejects_sizes_out_of_range(value):
    with pytest.raises(ValueError, match=rf"max_block_bytes={value} .*1 MiB"):
        malloc.tune_malloc(value)


@needs_glibc
def test_tuned_malloc_keeps_large_blocks_in_the_process():
    tuned = _faults("tuned")
    assert tuned["tuned"] is True
    # 5 x 48 MiB mapped afresh would be 61,440 faults of 4 KiB pages.
    assert tuned["faults"] < 2_000, tuned
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if thp.exists() and "[always]" in thp.read_text():
        return  # huge pages make the default's faults few too: nothing to compare
    default = _faults("default")
    assert default["faults"] > 30_000, default


@needs_glibc
def test_large_cpu_observations_warn_once_until_malloc_is_tuned(monkeypatch):
    monkeypatch.setattr(malloc, "_tuned_to", None)
    monkeypatch.setattr(malloc, "_warned_about_malloc", False)
    pixels = CoinRunConfig(obs_mode="pixels")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        CoinRunCore(2730, pixels, device="cpu")  # 2730 x 12,288 bytes: under 32 MiB
        assert not caught
        CoinRunCore(2731, pixels, device="cpu")
        CoinRunCore(4096, pixels, device="cpu")  # once per process
    assert len(caught) == 1
    assert caught[0].category is RuntimeWarning
    assert "tune_malloc()" in str(caught[0].message)

    monkeypatch.setattr(malloc, "_warned_about_malloc", False)
    monkeypatch.setattr(malloc, "_tuned_to", 256 << 20)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        CoinRunCore(4096, pixels, device="cpu")
    assert not caught


@needs_glibc
def test_the_command_tunes_malloc(monkeypatch, capsys):
    from coinrun_mg.cli import main

    monkeypatch.setattr(malloc, "_tuned_to", None)
    assert malloc.maps_afresh(48 << 20)
    assert main(["info"]) == 0
    assert not malloc.maps_afresh(48 << 20)
    assert malloc.maps_afresh(257 << 20)
    assert "malloc:      glibc, tune_malloc(): blocks up to 256 MiB" in capsys.readouterr().out
