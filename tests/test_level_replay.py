"""Level-replay curricula (agents/level_replay.py): 'dr' is today's training bit for bit;
robust PLR's replay distribution follows the published formulas, new levels never train
the policy, the buffer resumes exactly, bad settings are refused.  Tiny runs, seconds each."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from coinrun_mg.agents import PPOConfig, TrainingHook, train
from coinrun_mg.agents.checkpoint import CHECKPOINT_NAME, read_checkpoint
from coinrun_mg.agents.level_replay import (
    BUFFER_CSV,
    HISTORY_CSV,
    LevelReplay,
    replay_probabilities,
)
from coinrun_mg.replay_stats import (
    REPLAY_PLOT,
    aggregate_replay,
    contrast_curricula,
    format_contrast,
    format_replay_table,
    plot_replay,
    run_replay_summary,
)

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
    # The Maze digest is of the Maze quick profile of that time: whole world, MLP.
    before = {"maze_view_size": 0, "network": "mlp"} if game == "maze" else {}
    result = train(tiny_config(game, **before), tmp_path / game)
    assert weights_digest(result.agent) == DR_DIGESTS[game]


# --- the replay distribution ---------------------------------------------------------


def test_replay_probabilities_follow_the_published_formulas():
    # P = (1 - rho) P_S + rho P_C, P_S ∝ h(S)^(1/beta), P_C ∝ c - C_i (Jiang et al. 2021).
    scores = torch.tensor([0.5, 2.0, 1.0, -1.0])
    last = torch.tensor([1, 5, 3, 10])
    c, beta, rho = 10, 0.5, 0.3
    stale = torch.tensor([9.0, 5.0, 7.0, 0.0], dtype=torch.float64) / 21.0

    rank_h = torch.tensor([1 / 3, 1.0, 1 / 2, 1 / 4], dtype=torch.float64) ** (1 / beta)
    expected = (1 - rho) * rank_h / rank_h.sum() + rho * stale
    got = replay_probabilities(scores, last, c, "rank", beta, rho)
    torch.testing.assert_close(got, expected)

    power_h = torch.tensor([0.5, 2.0, 1.0, 0.0], dtype=torch.float64) ** (1 / beta)
    expected = (1 - rho) * power_h / power_h.sum() + rho * stale
    torch.testing.assert_close(replay_probabilities(scores, last, c, "power", beta, rho), expected)
    # Without staleness the ranks alone decide; all-zero power weights give a uniform P_S.
    only_rank = replay_probabilities(scores, last, c, "rank", beta, 0.0)
    torch.testing.assert_close(only_rank, rank_h / rank_h.sum())
    zeros = replay_probabilities(torch.zeros(4), last, c, "power", beta, 0.0)
    torch.testing.assert_close(zeros, torch.full((4,), 0.25, dtype=torch.float64))


def test_buffer_probabilities_cover_filled_slots_only_and_new_levels_fill_then_displace():
    config = tiny_config(curriculum="plr", plr_buffer_size=4, plr_staleness_coef=0.5)
    levels = LevelReplay(config, torch.device("cpu"))
    levels.episodes_started = 10
    for seed, score, start in ((11, 0.5, 1), (12, 2.0, 5), (13, 1.0, 3)):
        assert levels._insert(seed, score, start) is not None
        levels.scores[levels.slot_of[seed]] = score
    p = levels.probabilities()
    assert p[3] == 0 and abs(float(p.sum()) - 1) < 1e-12
    expected = replay_probabilities(
        torch.tensor([0.5, 2.0, 1.0]), torch.tensor([1, 5, 3]), 10, "rank", 0.3, 0.5
    )
    torch.testing.assert_close(p[:3], expected)
    # Full: a new level replaces the least likely replay only if it scores at least as high.
    levels._insert(14, 0.1, 9)
    levels.scores[3] = 0.1
    weakest = int(levels.probabilities().argmin())
    weakest_seed = int(levels.seeds[weakest])
    assert levels._insert(15, float(levels.scores[weakest]) - 1.0, 10) is None
    assert levels._insert(16, float(levels.scores[weakest]) + 1.0, 10) == weakest
    assert weakest_seed not in levels.slot_of and levels.slot_of[16] == weakest


# --- training ---------------------------------------------------------------------------


def _initial_weights(config: PPOConfig, tmp_path) -> dict[str, torch.Tensor]:
    """The weights a run starts from (a run of zero iterations: its first checkpoint)."""
    from coinrun_mg.agents.ppo import _start_run

    run = _start_run(config, torch.device("cpu"), None)
    return {k: v.clone() for k, v in run.agent.state_dict().items()}


@pytest.mark.parametrize("game", ["coinrun", "maze"])
def test_new_levels_never_update_the_policy(tmp_path, game):
    # Replay probability 0: every episode is a new level, so nothing may train.
    config = tiny_config(game, curriculum="plr", plr_buffer_size=8, plr_replay_prob=0.0)
    before = _initial_weights(config, tmp_path)
    result = train(config, tmp_path / "never")
    after = result.agent.state_dict()
    for name in before:
        assert torch.equal(before[name], after[name]), name
    assert result.stats["plr/buffer_fill"] == 1.0  # the levels were played and scored
    # Replays on: the same run trains.
    config = config.replace(plr_replay_prob=1.0, plr_min_fill=0.0)
    after = train(config, tmp_path / "replays").agent.state_dict()
    assert any(not torch.equal(before[name], after[name]) for name in before)


def test_transitions_train_exactly_when_their_episode_is_a_replay():
    from coinrun_mg.agents.ppo import Rollout, _start_run, collect_rollout

    # A buffer that never fills: no level leaves it, so every replayed level is in it.
    config = tiny_config(curriculum="plr", plr_buffer_size=256, plr_min_fill=0.0)
    run = _start_run(config, torch.device("cpu"), None)
    rollout = Rollout.allocate(config.num_steps, config.num_envs, run.env.observation_shape, "cpu")
    for _ in range(3):
        collect_rollout(run, rollout)
        replay = run.levels.step_replay.float()
        assert torch.equal(rollout.valid, replay)
    assert 0 < float(rollout.valid.mean()) < 1  # both kinds were played
    # A replayed episode runs on a buffer level; a new one on the env's own next level.
    seeds = set(run.levels.seeds.tolist())
    assert set(run.levels.step_seed[rollout.valid.bool()].tolist()) <= seeds


@pytest.mark.parametrize("game", ["coinrun", "maze"])
def test_plr_only_chooses_among_the_levels_dr_plays(tmp_path, game):
    from coinrun_mg.envs.rng import level_seeds_for

    config = tiny_config(game, curriculum="plr", plr_buffer_size=16, plr_min_fill=0.0)
    train(config, tmp_path / "run")
    saved = read_checkpoint(tmp_path / "run" / CHECKPOINT_NAME)["level_replay"]
    keys = config.seed + torch.arange(config.num_envs)
    dr_levels = {
        int(s) for e in range(100) for s in level_seeds_for(keys, torch.full_like(keys, e), config)
    }
    buffer = [int(s) for s in saved["seeds"] if s >= 0]
    assert buffer and set(buffer) <= dr_levels
    # Goal-moved flags are the levels' own, as DR would have drawn them.
    fresh = _start_states(game)(torch.tensor(buffer), config.env_config())
    moved = fresh.cheese_moved if game == "maze" else fresh.coin_randomized
    slots = [i for i, s in enumerate(saved["seeds"].tolist()) if s >= 0]
    assert torch.equal(moved, saved["moved"][slots])


def _start_states(game: str):
    from coinrun_mg.envs.coinrun.core import start_states as coinrun_start
    from coinrun_mg.envs.maze.core import start_states as maze_start

    return maze_start if game == "maze" else coinrun_start


def _core_class(game: str):
    from coinrun_mg.envs import CoinRunCore
    from coinrun_mg.envs.maze import MazeCore

    return MazeCore if game == "maze" else CoinRunCore


@pytest.mark.parametrize("game", ["coinrun", "maze"])
def test_start_levels_plays_the_seed_and_keeps_the_env_sequence(game):
    core_class = _core_class(game)
    config = tiny_config(game).env_config()
    a = core_class(4, config, device="cpu")
    b = core_class(4, config, device="cpu")
    a.reset(seed=3)
    b.reset(seed=3)
    a.start_levels(torch.tensor([12345]), torch.tensor([2]))
    assert int(a.state.level_seed[2]) == 12345
    c = core_class(1, config, device="cpu")
    c.reset(seed=0)
    c.start_levels(torch.tensor([12345]), torch.tensor([0]))
    assert torch.equal(a.observe()[2], c.observe()[0])
    a.start_next_episodes()
    b.start_next_episodes()
    assert torch.equal(a.state.level_seed, b.state.level_seed)
    assert torch.equal(a.observe(), b.observe())


def test_the_buffer_survives_a_kill_and_resume_exactly(tmp_path):
    config = tiny_config(
        curriculum="plr", plr_buffer_size=8, plr_min_fill=0.0, total_steps=4 * 256,
        checkpoint_every=512,
    )  # fmt: skip
    uninterrupted = train(config, tmp_path / "a")
    with pytest.raises(_Killed):
        train(config, tmp_path / "b", hooks=[KillAt(768)])  # dies in iteration 3
    resumed = train(config, tmp_path / "b", resume=True)
    a, b = uninterrupted.agent.state_dict(), resumed.agent.state_dict()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    first = read_checkpoint(tmp_path / "a" / CHECKPOINT_NAME)["level_replay"]
    last = read_checkpoint(tmp_path / "b" / CHECKPOINT_NAME)["level_replay"]
    assert first.keys() == last.keys()
    for key, value in first.items():  # exactly equal (NaN: an oracle value not computed)
        if isinstance(value, torch.Tensor):
            torch.testing.assert_close(value, last[key], rtol=0, atol=0, equal_nan=True)
        else:
            assert value == last[key], key
    assert float(first["replays"].sum()) > 0  # levels were replayed
    # The history file has one row per iteration, the killed run's extra row dropped.
    for run in ("a", "b"):
        rows = (tmp_path / run / HISTORY_CSV).read_text().splitlines()
        assert [r.split(",")[0] for r in rows[1:]] == ["256", "512", "768", "1024"]
    assert (tmp_path / "a" / BUFFER_CSV).read_text() == (tmp_path / "b" / BUFFER_CSV).read_text()


class _Killed(Exception):
    pass


class KillAt(TrainingHook):
    """Stands in for a kill: raises before the iteration's checkpoint is written."""

    def __init__(self, step: int):
        self.every_steps = step

    def __call__(self, step, policy, writer):
        raise _Killed(step)


# --- settings ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"curriculum": "prl"}, ["curriculum='prl'", "'dr'", "'plr'"]),
        ({"curriculum": "plr", "plr_score": "l1"}, ["plr_score='l1'", "'pvl'", "'maxmc'"]),
        ({"curriculum": "plr", "plr_prioritization": "soft"}, ["plr_prioritization", "'rank'"]),
        ({"curriculum": "plr", "plr_replay_prob": 1.5}, ["plr_replay_prob=1.5", "[0, 1]"]),
        ({"curriculum": "plr", "plr_staleness_coef": -0.1}, ["plr_staleness_coef", "[0, 1]"]),
        ({"curriculum": "plr", "plr_min_fill": 2.0}, ["plr_min_fill=2.0", "[0, 1]"]),
        ({"curriculum": "plr", "plr_temperature": 0.0}, ["plr_temperature=0.0", "> 0"]),
        ({"curriculum": "plr", "plr_buffer_size": 0}, ["plr_buffer_size=0", ">= 1"]),
        ({"plr_replay_prob": 0.9}, ["plr_replay_prob=0.9", "curriculum='dr'", "0.5"]),
        (
            {"curriculum": "plr", "env_id": "coinrun_mg/CoinRun-v0"},
            ["curriculum='plr'", "env_id='coinrun_mg/CoinRun-v0'", "'native'"],
        ),
    ],
)
def test_bad_curriculum_settings_are_refused_in_one_line_naming_the_field(overrides, words):
    with pytest.raises(ValueError) as info:
        tiny_config(**overrides)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message, (word, message)


# --- sweeps over curricula -------------------------------------------------------------

SWEEP_TINY = dict(
    num_envs=16, num_steps=16, minibatch_size=64, max_episode_steps=20, checkpoint_every=0
)


def _sweep(out_dir, curricula, **overrides):
    from coinrun_mg.sweep import run_sweep

    return run_sweep(
        (0.0, 0.5), [0], "quick", out_dir, total_steps=512, episodes=16, device="cpu",
        overrides={**SWEEP_TINY, **overrides}, hook_episodes=0, curricula=curricula, log=None,
    )  # fmt: skip


def test_sweep_over_curricula_adds_the_dimension_and_dr_alone_stays_as_it_was(tmp_path):
    import csv

    out = tmp_path / "sweep"
    dr_only = _sweep(out, ["dr"])
    # The report of a sweep before curricula existed; only each run's full config shows
    # the new fields, at their defaults (as with every field added to PPOConfig).
    runs = [{k: v for k, v in r.items() if k != "config"} for r in dr_only["runs"]]
    assert "curriculum" not in json.dumps({**dr_only, "runs": runs})
    assert dr_only["runs"][0]["config"]["curriculum"] == "dr"
    with open(out / "episodes.csv") as f:
        assert next(csv.reader(f))[0] == "rand_fraction"

    both = _sweep(out, ["plr", "dr"], plr_buffer_size=8, plr_min_fill=0.0)
    assert both["settings"]["curricula"] == ["dr", "plr"]
    kinds = [(r["curriculum"], r["rand_fraction"]) for r in both["runs"]]
    assert kinds == [("dr", 0.0), ("dr", 0.5), ("plr", 0.0), ("plr", 0.5)]
    assert all(r["status"] == "done" for r in both["runs"])
    # DR's runs were reused, and its aggregates are those of the DR-only sweep.
    assert [r["train_seconds"] for r in both["runs"][:2]] == [
        r["train_seconds"] for r in dr_only["runs"]
    ]
    for before, after in zip(dr_only["aggregate"], both["aggregate"][:2]):
        assert after == {"curriculum": "dr", **before}
    assert [a["curriculum"] for a in both["aggregate"][2:]] == ["plr", "plr"]
    plr_run = both["runs"][3]
    assert plr_run["config"]["curriculum"] == "plr" and plr_run["config"]["plr_buffer_size"] == 8
    assert both["runs"][1]["config"]["plr_buffer_size"] == 4000  # plr_* reach PLR runs only
    # Every curriculum is tested on DR's good levels of the same seed.
    assert plr_run["reference"] == both["runs"][0]["reference"]
    assert (out / "runs" / "plr_f0.5_s0" / BUFFER_CSV).exists()
    with open(out / "episodes.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows[0].keys() >= {"curriculum", "rand_fraction", "seed"}
    assert {r["curriculum"] for r in rows} == {"dr", "plr"}
    assert (out / "curve.png").stat().st_size > 0
    # What level replay did, from the PLR runs' histories; nothing of it in a DR-only sweep.
    assert "level_replay" not in dr_only
    assert [e["rand_fraction"] for e in both["level_replay"]] == [0.0, 0.5]
    half = both["level_replay"][1]
    assert half["seeds"] == [0] and half["runs"]["0"]["new_episodes"] > 0
    assert half["runs"]["0"] == run_replay_summary(out / "runs" / "plr_f0.5_s0")
    assert (out / REPLAY_PLOT).stat().st_size > 0
    contrast = both["curriculum_contrast"]
    assert [(c["rand_fraction"], c["seeds"]) for c in contrast] == [(0.0, [0]), (0.5, [0])]
    assert contrast == contrast_curricula(both["runs"])


def _history(run_dir, rows):
    """A level_replay.csv with the given (step, new, new moved share, replayed, replayed
    moved share, buffer moved share, trained share) rows."""
    run_dir.mkdir(parents=True)
    lines = ["global_step,episodes_new,new_moved_share,episodes_replayed,"
             "replayed_moved_share,buffer_moved_share,trained_share"]  # fmt: skip
    for row in rows:
        lines.append(",".join("" if v is None else str(v) for v in row))
    (run_dir / HISTORY_CSV).write_text("\n".join(lines) + "\n")


def test_replay_summaries_match_a_hand_computation(tmp_path):
    out = tmp_path / "sweep"
    _history(out / "runs" / "plr_f0.1_s0", [
        (100, 10, 0.1, 0, None, 0.1, 0.0),  # the warm-up: nothing replayed yet
        (200, 10, 0.0, 20, 0.5, 0.2, 0.4),
        (300, 20, 0.05, 30, 0.2, 0.25, 0.6),
    ])  # fmt: skip
    _history(out / "runs" / "plr_f0.1_s1", [(100, 40, 0.1, 10, 0.4, 0.3, 0.5)])
    one = run_replay_summary(out / "runs" / "plr_f0.1_s0")
    # New: 40 episodes, 1 + 0 + 1 moved; replayed: 50, 10 + 6 moved; trained share after
    # the first replay (step 200): the row at 300 only.
    assert one == {
        "steps": 300,
        "first_replay_step": 200,
        "new_episodes": 40,
        "new_moved_share": pytest.approx(2 / 40),
        "replayed_episodes": 50,
        "replayed_moved_share": pytest.approx(16 / 50),
        "buffer_moved_share": 0.25,
        "trained_share": pytest.approx(0.6),
    }
    runs = [
        {"rand_fraction": 0.1, "seed": seed, "status": "done", "curriculum": "plr"}
        for seed in (0, 1)
    ] + [{"rand_fraction": 0.1, "seed": 0, "status": "done"}]  # a DR run: no history
    (entry,) = aggregate_replay(runs, out)
    assert entry["seeds"] == [0, 1]
    # Replayed moved shares 0.32 and 0.4: mean 0.36, std 0.0565685; t(1 df) 12.7062.
    moved = entry["replayed_moved_share"]
    assert moved["mean"] == pytest.approx(0.36) and moved["std"] == pytest.approx(0.0565685)
    assert moved["ci"] == pytest.approx([0.0, 0.868249], abs=1e-6)
    assert entry["trained_share"]["n"] == 1  # seed 1 has no row after its first replay
    table = format_replay_table([entry])
    assert "0.360 [0.000, 0.868]" in table and table.splitlines()[1].endswith("2")
    assert plot_replay(runs, out) == out / REPLAY_PLOT


def test_cli_train_and_sweep_take_the_curriculum(tmp_path, capsys):
    from coinrun_mg import cli

    common = ["--device", "cpu", "--num-envs", "16", "--num-steps", "16"]
    common += ["--minibatch-size", "64", "--max-episode-steps", "20", "--no-progress"]
    code = cli.main(
        ["train", "--game", "maze", "--total-steps", "256", "--curriculum", "plr",
         "--plr-buffer-size", "8", "--run-dir", str(tmp_path / "run"), *common]
    )  # fmt: skip
    assert code == 0
    assert read_checkpoint(tmp_path / "run" / CHECKPOINT_NAME)["config"]["curriculum"] == "plr"
    assert (tmp_path / "run" / HISTORY_CSV).exists()
    code = cli.main(
        ["sweep", "--curricula", "dr,plr", "--set", "plr_buffer_size=0", "--out",
         str(tmp_path / "s"), "--device", "cpu"]
    )  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "plr_buffer_size=0" in err[0]
    with pytest.raises(SystemExit):
        cli.main(["sweep", "--curricula", "dr,prl", "--out", str(tmp_path / "t")])


def test_curricula_are_contrasted_seed_by_seed():
    def run(curriculum, fraction, seed, goal, proxy, coin=0.9, status="done"):
        entry = {"rand_fraction": fraction, "seed": seed, "status": status}
        entry.update(test={"goal_rate": goal, "proxy_rate": proxy}, train={"coin_rate": coin})
        return {**entry, "curriculum": curriculum} if curriculum != "dr" else entry

    runs = [
        run("dr", 0.01, 0, 0.5, 0.4),
        run("dr", 0.01, 1, 0.4, 0.5),
        run("dr", 0.01, 2, 0.3, 0.6),
        run("plr", 0.01, 0, 0.6, 0.2),  # proxy -0.2
        run("plr", 0.01, 1, 0.4, 0.4),  # proxy -0.1
        run("plr", 0.01, 2, 0.3, 0.3),  # proxy -0.3
        run("plr", 0.01, 3, 0.9, 0.0),  # no DR run of seed 3: left out
        run("plr", 0.0, 0, 0.2, 0.7),  # no DR run at fraction 0 at all
        run("dr", 0.02, 0, 0.5, 0.4),
        run("plr", 0.02, 0, 0.5, 0.4, status="failed"),  # not done: left out
    ]
    zero, one = contrast_curricula(runs)
    assert (zero["rand_fraction"], zero["seeds"], zero["test_proxy_rate"]["n"]) == (0.0, [], 0)
    assert one["curriculum"] == "plr" and one["seeds"] == [0, 1, 2]
    proxy = one["test_proxy_rate"]
    # -0.2, -0.1, -0.3: mean -0.2, std 0.1, t(2 df) 4.3027 * 0.1 / sqrt(3) = 0.248417.
    assert proxy["values"] == pytest.approx([-0.2, -0.1, -0.3])
    assert proxy["mean"] == pytest.approx(-0.2) and proxy["std"] == pytest.approx(0.1)
    assert proxy["ci"] == pytest.approx([-0.448417, 0.048417], abs=1e-6)
    assert one["test_goal_rate"]["mean"] == pytest.approx(0.1 / 3)
    assert one["train_coin_rate"]["values"] == pytest.approx([0.0, 0.0, 0.0])
    text = format_contrast([one])
    assert "plr - dr, fraction 0.01, paired by seed (3): goal +0.033" in text
    assert "proxy -0.200 [-0.448, +0.048]" in text
