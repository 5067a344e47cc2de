"""Physics on hand-built levels: jumps, crates, deaths, the coin, the end and timeouts."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from coinrun_mg.envs.coinrun.ascii import state_from_ascii
from coinrun_mg.envs.coinrun.config import CoinRunConfig
from coinrun_mg.envs.coinrun.physics import physics_step
from coinrun_mg.envs.coinrun.state import AGENT_RY, MAX_DX, MAX_DY

RIGHT, RIGHT_JUMP, STAND, JUMP, DOWN = 7, 8, 4, 5, 3


def run(state, policy, config=None, steps=200):
    """Step a one-env state with ``policy(state) -> action`` until the episode ends."""
    config = config or CoinRunConfig()
    for t in range(steps):
        action = torch.tensor([policy(state)])
        ev = physics_step(state, action, config)
        if bool(ev.terminated | ev.truncated):
            return ev, t + 1
    return ev, steps


def walled(*rows: str, headroom: int = 8) -> list[str]:
    """A drawing closed on the right by a full-height wall, as every CoinRun level is."""
    width = max(len(r) for r in rows)
    return [" " * width + "#"] * headroom + [r.ljust(width) + "#" for r in rows]


def jump_at(edge_x: float):
    """Run right, jumping while the agent's centre is just past ``edge_x``."""
    return lambda s: RIGHT_JUMP if edge_x <= float(s.agent_x) < edge_x + 1.5 else RIGHT


def test_standing_jump_rises_as_in_procgen():
    s = state_from_ascii(["A            E"])
    heights = []
    for t in range(20):
        physics_step(s, torch.tensor([JUMP if t == 0 else STAND]), CoinRunConfig())
        heights.append(float(s.agent_y) - AGENT_RY - 1)
    # vy = 1.5, then gravity 0.2 per step: 1.5 + 1.3 + ... + 0.1 = 6.4 tiles.
    assert max(heights) == pytest.approx(6.4, abs=1e-4)
    assert heights[-1] == pytest.approx(0.0, abs=1e-5)  # back on the floor


def test_no_jump_in_mid_air():
    s = state_from_ascii(["A            E"])
    physics_step(s, torch.tensor([JUMP]), CoinRunConfig())
    vy_after_first = float(s.agent_vy)
    physics_step(s, torch.tensor([JUMP]), CoinRunConfig())
    assert float(s.agent_vy) < vy_after_first  # pressing up in the air does not re-jump


@pytest.mark.parametrize("height", [1, 3, MAX_DY])
def test_climbs_ledges_the_generator_uses(height):
    drawing = ["      E"] + ["     ##"] * height
    drawing[-1] = "A    ##"
    s = state_from_ascii(walled(*drawing))
    ev, _ = run(s, jump_at(4.0))
    assert bool(ev.coin_collected), f"could not climb a {height}-high ledge"


def test_a_seven_high_wall_is_too_high():
    drawing = ["      E"] + ["     ##"] * 7
    drawing[-1] = "A    ##"
    s = state_from_ascii(walled(*drawing))
    ev, steps = run(s, lambda s: RIGHT_JUMP, steps=300)
    assert not bool(ev.coin_collected) and bool(ev.truncated | (steps == 300))


@pytest.mark.parametrize("width", [3, 5, MAX_DX])
def test_jumps_across_pits_the_generator_uses(width):
    pit = "^" * width
    drawing = [
        "A      " + " " * width + "   E",
        "=======" + pit + "=====",
        "#######" + "~" * width + "#####",
    ]
    s = state_from_ascii(walled(*drawing))
    ev, _ = run(s, jump_at(7.4))
    assert bool(ev.coin_collected), f"could not cross a {width}-wide pit"


def test_lava_kills():
    s = state_from_ascii(walled("A         E", "===^^^^====", "###~~~~~###"))
    ev, _ = run(s, lambda s: RIGHT)
    assert bool(ev.died) and not bool(ev.coin_collected) and float(ev.reward) == 0.0


def test_saw_kills():
    s = state_from_ascii(walled("A    *    E"))
    ev, _ = run(s, lambda s: RIGHT)
    assert bool(ev.died) and 4.0 < float(s.agent_x) < 6.5


def test_enemy_kills_and_walks():
    s = state_from_ascii(["#A       e    #E"])
    start = float(s.enemy_x[0, 0])
    physics_step(s, torch.tensor([STAND]), CoinRunConfig())
    assert float(s.enemy_x[0, 0]) == pytest.approx(start + 0.15)
    ev, _ = run(s, lambda s: STAND, steps=400)
    assert bool(ev.died)


def test_enemy_turns_at_barriers():
    s = state_from_ascii(["A  |  e |  E"])
    xs = []
    for _ in range(60):
        physics_step(s, torch.tensor([STAND]), CoinRunConfig())
        xs.append(float(s.enemy_x[0, 0]))
    assert min(xs) >= 5.5 - 1e-5 and max(xs) <= 8.5 + 1e-5
    assert max(xs) > 8.3 and min(xs) < 5.7  # it walked the whole stretch both ways


def test_crate_is_a_platform_from_above_only():
    # Crates never block sideways: walk straight through a stack.
    s = state_from_ascii(["    c     E", "A   c      "])
    for _ in range(14):
        physics_step(s, torch.tensor([RIGHT]), CoinRunConfig())
    assert float(s.agent_x) > 6.0
    # Jump and drift onto a one-crate stack: it holds the agent from above.
    s = state_from_ascii(["A c      E"])
    physics_step(s, torch.tensor([JUMP]), CoinRunConfig())
    for _ in range(40):
        x = float(s.agent_x)
        physics_step(s, torch.tensor([RIGHT if x < 3.5 else STAND]), CoinRunConfig())
    assert float(s.agent_y) == pytest.approx(2 + AGENT_RY, abs=1e-4)
    assert 3.0 < float(s.agent_x) < 4.5
    # Pressing down drops through it to the floor.
    for _ in range(10):
        physics_step(s, torch.tensor([DOWN]), CoinRunConfig())
    assert float(s.agent_y) == pytest.approx(1 + AGENT_RY, abs=1e-4)


def test_coin_pays_ten_and_terminates():
    s = state_from_ascii(["A   $"])
    ev, steps = run(s, lambda s: RIGHT)
    assert bool(ev.coin_collected) and bool(ev.terminated) and float(ev.reward) == 10.0
    assert not bool(ev.died)


def test_reached_end_is_tracked_and_optionally_terminates():
    # A moved coin up on a shelf out of the way; the end is on the floor.
    drawing = walled("  $     ", "  #     ", "        ", "        ", "A      E")
    s = state_from_ascii(drawing)
    assert bool(s.coin_randomized)
    ev, _ = run(s, lambda s: RIGHT, steps=40)
    assert bool(s.reached_end) and not bool(ev.terminated)  # default: the episode goes on
    assert float(ev.reward) == 0.0

    s = state_from_ascii(drawing)
    ev, _ = run(s, lambda s: RIGHT, CoinRunConfig(end_terminates=True), steps=40)
    assert bool(ev.terminated) and bool(ev.touched_end) and not bool(ev.coin_collected)
    assert float(ev.reward) == 0.0


def test_timeout_truncates():
    s = state_from_ascii(["A       E"])
    config = CoinRunConfig(max_episode_steps=25)
    ev, steps = run(s, lambda s: STAND, config, steps=100)
    assert steps == 25 and bool(ev.truncated) and not bool(ev.terminated)


def test_actions_nine_to_fourteen_stand_still():
    for action in range(9, 15):
        s = state_from_ascii(["A       E"])
        for _ in range(5):
            physics_step(s, torch.tensor([action]), CoinRunConfig())
        assert float(s.agent_x) == pytest.approx(1.5) and float(s.agent_vx) == 0.0


def test_walking_only_the_alive_enemies_changes_nothing():
    # physics_step(enemy_slots=...) walks the listed alive enemies only (the CPU core's
    # path); every state field and event must equal the walk over all slots, including
    # deaths by enemy: some agents start on top of an enemy's patrol.
    from coinrun_mg.envs.coinrun.core import start_states
    from coinrun_mg.envs.coinrun.state import alive_enemy_slots

    config = CoinRunConfig(distribution_mode="hard")
    dense = start_states(torch.arange(256) + 40_000, config)
    first = dense.enemy_alive.float().argmax(dim=1)  # an alive slot, where there is one
    has_enemy = dense.enemy_alive.any(dim=1)
    rows = torch.arange(256)
    near = has_enemy & (rows % 2 == 0)
    dense.agent_x = torch.where(near, dense.enemy_x[rows, first] + 1.0, dense.agent_x)
    dense.agent_y = torch.where(near, dense.enemy_y[rows, first] + 0.1, dense.agent_y)
    listed = copy.deepcopy(dense)
    slots = alive_enemy_slots(listed)
    assert slots.flat.numel() > 100
    gen = torch.Generator().manual_seed(3)
    enemy_deaths = 0
    for _ in range(120):
        actions = torch.randint(0, 15, (256,), generator=gen)
        expected = physics_step(dense, actions, config)
        got = physics_step(listed, actions, config, enemy_slots=slots)
        for f in dataclasses.fields(expected):
            assert torch.equal(getattr(got, f.name), getattr(expected, f.name)), f.name
        for f in dataclasses.fields(dense):
            assert torch.equal(getattr(listed, f.name), getattr(dense, f.name)), f.name
        # A death with no lava or saw in the agent's level can only be an enemy's doing.
        enemy_deaths += int((expected.died & (dense.danger_bits == 0).all(dim=1)).sum())
    assert enemy_deaths > 0
