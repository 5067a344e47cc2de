"""Shared test settings."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def one_torch_thread():
    """Run a test on one torch thread, then restore the setting.

    On a busy 2-core machine one thread is faster than two for these small batches, and
    a fixed thread count fixes the floating-point reduction order that bit-exact
    comparisons (resume, reproducibility) rely on.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def sampling_policy():
    """A small untrained agent (symbolic view, MLP) as a sampling ``Policy``, biased to the
    right so that its episodes end at many different steps (goal, proxy, death)."""
    from coinrun_mg.agents import Agent, Policy, PPOConfig
    from coinrun_mg.envs import CoinRunConfig, CoinRunCore

    config = PPOConfig.from_profile("quick", device="cpu")
    env = CoinRunCore(1, CoinRunConfig(**config.env_kwargs()), device="cpu")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        agent = Agent(env.observation_shape, 15, config.network)
    with torch.no_grad():
        agent.actor.weight.zero_()
        agent.actor.bias.zero_()
        agent.actor.bias[6:9] = 2.0  # the three right moves
    return Policy(agent, config)
