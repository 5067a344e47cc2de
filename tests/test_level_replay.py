"""Level-replay curricula (agents/level_replay.py): 'dr' is today's training bit for bit;
robust PLR's replay distribution follows the published formulas, new levels never train
the policy, the buffer resumes exactly, bad settings are refused.  Tiny runs, seconds each."""

from __future__ import annotations

import hashlib

import pytest
import torch

from coinrun_mg.agents import PPOConfig, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_config(game: str = "coinrun", **overrides) -> PPOConfig:
    """16 envs x 16 steps per iteration, 3 iterations, episodes of at most 20 steps."""
    settings = dict(
        device="cpu",
        num_envs=16,
        num_steps=16,
        minibatch_size=64,
        total_steps=3 * 256,
        max_episode_steps=20,
        rand_fraction=0.5,
        checkpoint_every=0,
        progress_bar=False,
        game=game,
    )
    settings.update(overrides)
    return PPOConfig.from_profile("quick", **settings)


def weights_digest(agent: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, value in sorted(agent.state_dict().items()):
        digest.update(name.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


# Digests of the weights after tiny_config's run, computed on the code before level replay
# existed (commit 62a747a): the default curriculum 'dr' must not change training at all.
# Like every bit-exact check here, they hold for one torch build on one CPU thread.
DR_DIGESTS = {
    "coinrun": "fc62d2741c1072b63f7af97e5826b6c661207113206282ccf194cda1e426954a",
    "maze": "d0d922de1ea7c7ceb8dccada18b19b5f04dfd55ddaf23bc0f5ee4271c9a0676e",
}


@pytest.mark.parametrize("game", ["coinrun", "maze"])
def test_dr_training_is_bit_identical_to_before_level_replay(tmp_path, game):
    result = train(tiny_config(game), tmp_path / game)
    assert weights_digest(result.agent) == DR_DIGESTS[game]
