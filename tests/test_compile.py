"""The compiled step (CoinRunCore(compile=...)): same results on the CPU, reproducible on CUDA."""

from __future__ import annotations

import pytest
import torch

from coinrun_mg.envs.coinrun import core as core_module
from coinrun_mg.envs.coinrun.config import CoinRunConfig
from coinrun_mg.envs.coinrun.core import CoinRunCore
from coinrun_mg.envs.compile import resolve_compile

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _rollout(core: CoinRunCore, steps: int, seed: int = 5):
    """Observations, rewards, dones and positions of a random-action rollout."""
    obs, _ = core.reset(seed=seed)
    gen = torch.Generator().manual_seed(seed)
    frames = [obs.cpu()]
    for _ in range(steps):
        actions = torch.randint(0, 15, (core.num_envs,), generator=gen).to(core.device)
        obs, reward, terminated, truncated, info = core.step(actions)
        frames += [obs.cpu(), reward.cpu(), terminated.cpu(), truncated.cpu()]
        frames += [info["agent_x"].cpu(), core.state.agent_y.cpu()]
    return frames


def test_resolve_compile():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_compile("auto", cpu) is False and resolve_compile("auto", cuda) is True
    assert resolve_compile(True, cpu) is True and resolve_compile(False, cuda) is False
    for bad in ("yes", 1, None):
        with pytest.raises(ValueError, match=r"compile=.*accepted values are \('auto', True"):
            resolve_compile(bad, cpu)
    with pytest.raises(ValueError, match="compile='on'"):
        CoinRunCore(2, compile="on")


def test_auto_leaves_the_cpu_eager():
    core = CoinRunCore(2, device="cpu")
    assert core.compiled is False


@pytest.mark.parametrize("walk_alive", [False, True], ids=["one-graph", "alive-enemy-walk"])
def test_compiled_cpu_step_is_bit_identical(one_torch_thread, monkeypatch, walk_alive):
    # Compiling the physics and the symbolic observation's plan must not change a single
    # bit on the CPU, including episode ends and resets (short episodes: a low step limit).
    # Small compiled batches compile the whole physics; large ones (here: from 1 env)
    # compile the agent's part and, with their number symbolic, the walk of the alive
    # enemies (which changes with every new level here).
    if walk_alive:
        monkeypatch.setattr(core_module, "_COMPILED_ALIVE_WALK_FROM", 1)
    config = CoinRunConfig(max_episode_steps=25, distribution_mode="hard")
    eager = _rollout(CoinRunCore(12, config, device="cpu", compile=False), 60)
    compiled_core = CoinRunCore(12, config, device="cpu", compile=True)
    compiled = _rollout(compiled_core, 60)
    assert compiled_core.compiled
    parts = [compiled_core._plan]
    if walk_alive:
        parts += [compiled_core._move_agent_step, compiled_core._step_alive_enemies]
    else:
        parts.append(compiled_core._physics)
    assert all(part.working for part in parts)  # compiled, no fallback
    assert all(torch.equal(a, b) for a, b in zip(eager, compiled, strict=True))


def test_the_gpu_observation_compiles_whole_and_matches(monkeypatch, one_torch_thread):
    # On CUDA the observation is compiled too.  Check on the CPU that its accelerator
    # path (no boolean indexing) traces into one graph and gives the eager bytes.
    from coinrun_mg.envs.coinrun import observation as render

    monkeypatch.setattr(render, "_CPU_PATHS", False)
    core = CoinRunCore(64, CoinRunConfig(max_episode_steps=25), device="cpu")
    core.reset(seed=2)
    gen = torch.Generator().manual_seed(1)
    for _ in range(30):
        core.step(torch.randint(0, 15, (64,), generator=gen))
    compiled = torch.compile(render.symbolic_obs, dynamic=False, fullgraph=True)
    kwargs = {"constants": render.symbolic_constants("cpu"), "padded": core._padded}
    assert torch.equal(compiled(core.state, 13, **kwargs), core.observe())


def test_a_failing_compile_falls_back_to_eager_with_a_warning(one_torch_thread):
    # No C++ compiler (CPU) or no Triton (GPU): the env warns once and runs eagerly.
    config = CoinRunConfig(max_episode_steps=25)
    core = CoinRunCore(8, config, device="cpu", compile=True)

    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler found\nmore detail")

    core._physics.compiled = broken
    with pytest.warns(RuntimeWarning, match=r"physics_step failed \(RuntimeError: no C\+\+ "):
        fallback = _rollout(core, 40)
    eager = _rollout(CoinRunCore(8, config, device="cpu", compile=False), 40)
    assert all(torch.equal(a, b) for a, b in zip(eager, fallback, strict=True))


@needs_cuda
def test_compiled_cuda_is_reproducible_and_close_to_eager():
    config = CoinRunConfig(max_episode_steps=40)
    first = _rollout(CoinRunCore(64, config, device="cuda", compile=True), 80)
    second = _rollout(CoinRunCore(64, config, device="cuda", compile=True), 80)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    # One step from the same start: fused multiply-adds move positions by rounding only.
    eager = _rollout(CoinRunCore(64, config, device="cuda", compile=False), 1)
    compiled = _rollout(CoinRunCore(64, config, device="cuda", compile=True), 1)
    assert torch.allclose(eager[5], compiled[5], atol=1e-5)  # agent_x
    assert torch.equal(eager[2], compiled[2])  # rewards


@needs_cuda
@pytest.mark.parametrize("obs_mode", ["symbolic", "pixels"])
def test_compiled_cuda_observations_equal_eager(obs_mode):
    # The same state must give the same observation bytes, compiled or not.
    config = CoinRunConfig(obs_mode=obs_mode, distribution_mode="hard")
    eager = CoinRunCore(256, config, device="cuda", compile=False)
    compiled = CoinRunCore(256, config, device="cuda", compile=True)
    eager.reset(seed=9)
    gen = torch.Generator().manual_seed(0)
    for _ in range(30):
        eager.step(torch.randint(0, 15, (256,), generator=gen).cuda())
    compiled.state = eager.state
    assert torch.equal(compiled.observe(), eager.observe())
