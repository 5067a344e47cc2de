"""The layout of envs/: what imports what, the package exports, the event vocabulary."""

from __future__ import annotations

import subprocess
import sys

import torch

from coinrun_mg.envs import CoinRunConfig, CoinRunCore, EnvState, family_events
from coinrun_mg.envs.coinrun import core as coinrun_core
from coinrun_mg.envs.coinrun import state as coinrun_state
from coinrun_mg.envs.events import FAMILY_KEYS, GAME_EVENTS


def _modules_after_import(module: str, bare_packages: bool = False) -> set[str]:
    """The modules loaded by a fresh interpreter that imports ``module``.  With
    ``bare_packages`` the ``__init__`` of coinrun_mg.envs and coinrun_mg.envs.coinrun are
    skipped (they export everything), so only what ``module`` itself imports is loaded."""
    code = f"import sys\nimport {module}\nprint('\\n'.join(sorted(sys.modules)))"
    if bare_packages:
        code = _BARE_PACKAGES + code
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return set(out.stdout.split())


_BARE_PACKAGES = """
import importlib.util, os, sys, types
envs_dir = importlib.util.find_spec("coinrun_mg.envs").submodule_search_locations[0]
for name, path in (("coinrun_mg.envs", envs_dir),
                   ("coinrun_mg.envs.coinrun", os.path.join(envs_dir, "coinrun"))):
    package = types.ModuleType(name)
    package.__path__ = [path]
    sys.modules[name] = package
"""


def test_the_physics_does_not_import_the_observation():
    loaded = _modules_after_import("coinrun_mg.envs.coinrun.physics", bare_packages=True)
    assert "coinrun_mg.envs.coinrun.physics" in loaded
    assert "coinrun_mg.envs.coinrun.state" in loaded
    assert "coinrun_mg.envs.coinrun.observation" not in loaded
    # The check can fail: the core does import the observation.
    loaded = _modules_after_import("coinrun_mg.envs.coinrun.core", bare_packages=True)
    assert "coinrun_mg.envs.coinrun.observation" in loaded


def test_importing_envs_loads_neither_procgen_nor_the_facades():
    loaded = _modules_after_import("coinrun_mg.envs")
    assert "coinrun_mg.envs.coinrun.core" in loaded
    unwanted = {
        "procgen",
        "coinrun_mg.envs.gym_env",
        "coinrun_mg.envs.coinrun.gym_env",
        "coinrun_mg.envs.coinrun.procgen_env",
        "coinrun_mg.envs.coinrun.procgen_state",
    }
    assert not unwanted & loaded


def test_the_package_exports_coinruns_core():
    assert CoinRunCore is coinrun_core.CoinRunCore
    assert EnvState is coinrun_state.EnvState
    core = CoinRunCore(2, CoinRunConfig(), device="cpu", compile=False)
    obs, _ = core.reset(seed=0)
    assert obs.shape == (2, *core.observation_shape)


def test_every_game_reports_the_family_events_under_its_info_keys():
    for game, keys in GAME_EVENTS.items():
        assert len(keys.keys()) == len(FAMILY_KEYS), game
    assert set(GAME_EVENTS["coinrun"].keys()) <= set(coinrun_core.INFO_KEYS)


def test_family_events_reads_coinrun_infos():
    core = CoinRunCore(4, CoinRunConfig(rand_fraction=0.5), device="cpu", compile=False)
    core.reset(seed=3)
    _, _, _, _, info = core.step(torch.zeros(4, dtype=torch.int64))
    events = family_events(info, "coinrun")
    assert list(events) == list(FAMILY_KEYS)
    assert events["goal_reached"] is info["coin_collected"]
    assert events["proxy_reached"] is info["reached_end"]
    assert events["goal_moved"] is info["coin_randomized"]
    assert events["level_seed"] is info["level_seed"]
