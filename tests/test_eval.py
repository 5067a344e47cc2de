"""Goal-versus-proxy evaluation: outcome classification, Wilson intervals, report schema,
scripted and witness-replaying policies, the good-levels filter, reproducibility, the
procgen backend and the ``eval`` CLI.  Small batches: the file runs in well under a
minute on two busy CPU cores."""

from __future__ import annotations

import csv
import errno
import json
import math

import pytest
import torch

import coinrun_mg  # noqa: F401 - registers the env ids
from coinrun_mg import cli
from coinrun_mg.envs.coinrun.config import CoinRunConfig
from coinrun_mg.envs.coinrun.core import level_seeds_for
from coinrun_mg.envs.coinrun.solver import find_witnesses
from coinrun_mg.eval import (
    COLUMNS,
    DIED,
    GOAL,
    OUTCOMES,
    PROXY,
    TIMEOUT,
    EvalReport,
    FilteredEvalReport,
    classify_episode,
    evaluate,
    step_outcome,
    student_t95,
    wilson_interval,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def right_jump(obs: torch.Tensor) -> torch.Tensor:
    return torch.full((obs.shape[0],), 8, dtype=torch.int64, device=obs.device)


def trajectory(*steps: str):
    """Per-step flags from letters: c coin, e end (sticky from then on), d died, t timeout."""
    coin, end, died, timeout = [], [], [], []
    reached = False
    for step in steps:
        reached = reached or "e" in step
        coin.append("c" in step)
        end.append(reached)
        died.append("d" in step)
        timeout.append("t" in step)
    return coin, end, died, timeout


# --- outcome classification ---------------------------------------------------------


@pytest.mark.parametrize(
    "steps, expected",
    [
        (("", "", "c"), (GOAL, 3)),  # coin first
        (("", "e", "", "c"), (PROXY, 2)),  # end first, coin later (end_terminates=False)
        (("", "e"), (PROXY, 2)),  # end first, episode ends there
        (("", "", "", "d"), (DIED, 4)),
        (("",) * 5 + ("t",), (TIMEOUT, 6)),
        (("", "ce"), (GOAL, 2)),  # coin on the end tile: both in one step is the goal
        (("", "ed"), (PROXY, 2)),  # the end beats death in the same step
        (("", "et"), (PROXY, 2)),
        (("", "", ""), (None, 3)),  # undecided
    ],
)
def test_classify_episode_on_scripted_trajectories(steps, expected):
    assert classify_episode(*trajectory(*steps)) == expected


def test_sticky_end_flag_before_the_coin_step_is_proxy():
    # reached_end was already True at the previous step, the coin comes later: proxy.
    coin = [False, False, True]
    end = [False, True, True]
    assert classify_episode(coin, end, [False] * 3, [False] * 3) == (PROXY, 2)
    assert step_outcome(True, True, False, False) == GOAL
    assert step_outcome(False, False, False, False) is None
    with pytest.raises(ValueError):
        classify_episode([True], [], [], [])


# --- Wilson intervals -----------------------------------------------------------------


@pytest.mark.parametrize(
    "k, n, expected",
    [
        (0, 10, (0.0, 0.2775)),
        (5, 10, (0.2366, 0.7634)),
        (10, 10, (0.7225, 1.0)),
        (1, 100, (0.0018, 0.0545)),
    ],
)
def test_wilson_interval_known_values(k, n, expected):
    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(expected[0], abs=1e-3)
    assert hi == pytest.approx(expected[1], abs=1e-3)


def test_wilson_interval_edge_cases():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def _t_cdf(x: float, df: int, steps: int = 20_000) -> float:
    """Student's t distribution function, by Simpson's rule over the density."""
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def density(t):
        return math.exp(log_c - (df + 1) / 2 * math.log1p(t * t / df))

    h = x / steps
    odd = sum(density((2 * i - 1) * h) for i in range(1, steps // 2 + 1))
    even = sum(density(2 * i * h) for i in range(1, steps // 2))
    return 0.5 + h / 3 * (density(0) + 4 * odd + 2 * even + density(x))


@pytest.mark.parametrize("df", [1, 2, 3, 4, 9, 30, 31, 60, 200])
def test_student_t95_is_the_975_quantile(df):
    # The table (df <= 30) and the expansion beyond it, against the integrated density.
    assert _t_cdf(student_t95(df), df) == pytest.approx(0.975, abs=2e-5)


def test_student_t95_refuses_bad_degrees_of_freedom():
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match=f"df={bad!r} is invalid"):
            student_t95(bad)


# --- reports ---------------------------------------------------------------------------


def test_report_dict_csv_and_table_schema(tmp_path):
    report = evaluate(right_jump, episodes=24, num_envs=8, device="cpu")
    assert isinstance(report, EvalReport)
    d = report.to_dict()
    json.loads(json.dumps(d))  # JSON-able
    for outcome in OUTCOMES:
        assert 0.0 <= d[f"{outcome}_rate"] <= 1.0
        lo, hi = d[f"{outcome}_ci"]
        assert 0.0 <= lo <= d[f"{outcome}_rate"] <= hi <= 1.0
    assert sum(d[f"{o}_rate"] for o in OUTCOMES) == pytest.approx(1.0)
    assert d["episodes"] == 24 and len(report.rows) == 24
    assert d["mean_return"] == pytest.approx(10.0 * d["goal_rate"])
    assert d["mean_length"] == pytest.approx(sum(r["steps"] for r in report.rows) / 24)

    path = tmp_path / "rows.csv"
    report.write_csv(path)
    with open(path) as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == COLUMNS
    assert len(rows) == 25
    for row, line in zip(report.rows, rows[1:]):
        assert line[COLUMNS.index("outcome")] == row["outcome"]
        assert int(line[0]) == row["level_seed"]
    # The flags agree with the outcome; the test config moves every coin.
    for row in report.rows:
        assert row["coin_randomized"]
        assert row["coin_collected"] == (row["outcome"] == GOAL)
        if row["outcome"] == PROXY:
            assert row["reached_end"]
        assert row["died"] or row["outcome"] != DIED
    table = report.table()
    assert all(o in table for o in OUTCOMES) and "episodes 24" in table


def test_empty_report_is_json_able():
    d = EvalReport([], []).to_dict()
    assert d["goal_rate"] is None and d["episodes"] == 0
    json.dumps(d)


# --- scripted policies -------------------------------------------------------------------


def test_right_jump_on_test_levels_and_reproducibility():
    kwargs = dict(episodes=32, seed=3, device="cpu", distribution_mode="hard")
    report = evaluate(right_jump, num_envs=32, **kwargs)
    d = report.to_dict()
    # Right+jump never waits: it either picks up a coin on its path (often the first
    # section's left edge), runs into the end, or dies; it never times out.
    assert d["timeout_rate"] == 0.0
    assert d["proxy_rate"] > 0.0 and d["goal_rate"] > 0.3
    # The same seed gives the same report, whatever the batch size (slot pool order).
    again = evaluate(right_jump, num_envs=32, **kwargs)
    pooled = evaluate(right_jump, num_envs=12, **kwargs)
    assert again.rows == report.rows and pooled.rows == report.rows
    other = evaluate(right_jump, num_envs=32, **{**kwargs, "seed": 4})
    assert [r["level_seed"] for r in other.rows] != [r["level_seed"] for r in report.rows]


def test_stochastic_policy_reports_are_reproducible():
    def random_policy(obs):  # the global torch RNG, which evaluate seeds
        return torch.randint(0, 15, (obs.shape[0],))

    kwargs = dict(episodes=12, num_envs=6, device="cpu", max_episode_steps=40)
    torch.manual_seed(123)
    a = evaluate(random_policy, seed=1, **kwargs)
    after = torch.rand(3)
    torch.manual_seed(123)
    assert torch.equal(torch.rand(3), after)  # the caller's RNG is left alone
    b = evaluate(random_policy, seed=1, **kwargs)
    assert a.rows == b.rows and a.returns == b.returns


STOCHASTIC = dict(seed=2, device="cpu", max_episode_steps=60)


def test_stochastic_rows_do_not_depend_on_episodes_or_num_envs(sampling_policy):
    # Episode i's level and its action noise come from its own key: a longer evaluation
    # and another batch size play the same first episodes the same way.
    policy = sampling_policy
    short = evaluate(policy, episodes=100, **STOCHASTIC)  # num_envs: 100 (the default)
    long = evaluate(policy, episodes=200, **STOCHASTIC)  # num_envs: 200
    assert len({r["steps"] for r in short.rows}) > 10  # the test can tell episodes apart
    assert len({r["outcome"] for r in short.rows}) > 1
    assert long.rows[:100] == short.rows and long.returns[:100] == short.returns
    for num_envs in (7, 64):
        other = evaluate(policy, episodes=100, num_envs=num_envs, **STOCHASTIC)
        assert other.rows == short.rows and other.returns == short.returns
    # The noise is the policy's own: the same agent, deterministic, plays differently.
    policy.deterministic = True
    assert evaluate(policy, episodes=100, **STOCHASTIC).rows != short.rows


def test_stochastic_good_levels_do_not_depend_on_episodes_or_num_envs(sampling_policy):
    policy = sampling_policy
    kwargs = dict(reference_policy=policy, **STOCHASTIC)
    short = evaluate(policy, episodes=60, **kwargs)
    long = evaluate(policy, episodes=120, **kwargs)
    narrow = evaluate(policy, episodes=60, num_envs=7, **kwargs)
    assert 0 < sum(short.good_levels) < 60
    assert long.good_levels[:60] == short.good_levels == narrow.good_levels
    assert long.all.rows[:60] == short.all.rows == narrow.all.rows


def test_episodes_stop_at_the_first_end_touch_without_end_terminates():
    # With end_terminates=False the env goes on after the end marker, the evaluation does
    # not: the same episodes decide the same way, on the same step.
    kwargs = dict(episodes=24, seed=11, num_envs=24, device="cpu")
    a = evaluate(right_jump, **kwargs)
    b = evaluate(right_jump, end_terminates=False, **kwargs)
    assert a.rows == b.rows


def test_stand_still_policy_times_out():
    still = lambda obs: torch.full((obs.shape[0],), 4, dtype=torch.int64)  # noqa: E731
    report = evaluate(
        still, episodes=6, device="cpu", distribution_mode="easy", max_episode_steps=30
    )
    assert report.timeout_rate == 1.0
    assert all(r["steps"] == 30 for r in report.rows)


class WitnessPolicy:
    """Replays one action sequence per environment (env i of a single batch)."""

    def __init__(self, witnesses):
        self.witnesses = witnesses
        self.t = 0

    def __call__(self, obs):
        actions = [w[self.t] if self.t < len(w) else 4 for w in self.witnesses]
        self.t += 1
        return torch.tensor(actions, dtype=torch.int64)


@pytest.mark.parametrize("rand_fraction", [0.0, 1.0])
def test_witness_replaying_policy_reaches_the_goal_every_time(rand_fraction):
    # rand_fraction=0: the coin sits on the end, collecting it touches the end in the
    # same step (goal); rand_fraction=1: the solver's witnesses collect the moved coin.
    config = CoinRunConfig(
        distribution_mode="easy", rand_fraction=rand_fraction, end_terminates=True
    )
    seed, n = 7, 10
    keys = seed + torch.arange(n)
    seeds = level_seeds_for(keys, torch.zeros_like(keys), config)
    witnesses = find_witnesses(seeds, config)
    found = [w is not None for w in witnesses]
    assert sum(found) >= n - 1
    policy = WitnessPolicy([w or [4] for w in witnesses])
    report = evaluate(
        policy,
        episodes=n,
        seed=seed,
        num_envs=n,
        device="cpu",
        distribution_mode="easy",
        rand_fraction=rand_fraction,
    )
    assert [r["level_seed"] for r in report.rows] == seeds.tolist()
    for row, ok, w in zip(report.rows, found, witnesses):
        if ok:
            assert row["outcome"] == GOAL and row["steps"] == len(w)
            assert row["reached_end"] == (rand_fraction == 0.0)


# --- good levels ----------------------------------------------------------------------------


def test_good_levels_filter_with_the_same_deterministic_policy():
    # The reference run (coin at the end, end not terminating) follows the test run's
    # trajectory up to the test coin, so every level where the test run got the coin is
    # "bad": on the good levels the goal rate is exactly 0.
    result = evaluate(right_jump, episodes=40, seed=5, device="cpu", reference_policy=right_jump)
    assert isinstance(result, FilteredEvalReport)
    assert result.all.episodes == 40
    assert result.filtered.episodes == sum(result.good_levels)
    assert 0 < result.filtered.episodes < 40
    assert result.filtered.goal_rate == 0.0
    for row, good in zip(result.all.rows, result.good_levels):
        assert row["good_level"] == good
        if row["outcome"] == GOAL:
            assert not good
    d = result.to_dict()
    json.dumps(d)
    assert d["good_levels"] == result.filtered.episodes
    assert d["all"] == result.all.to_dict()
    assert "good levels" in result.table()

    # An explicit set of good level seeds gives the same split.
    good_seeds = [r["level_seed"] for r in result.filtered.rows]
    again = evaluate(right_jump, episodes=40, seed=5, device="cpu", good_levels=good_seeds)
    assert again.good_levels == result.good_levels
    with pytest.raises(ValueError):
        evaluate(right_jump, episodes=2, good_levels=[], reference_policy=right_jump)


def test_filtered_csv_has_a_good_level_column(tmp_path):
    result = evaluate(right_jump, episodes=8, device="cpu", good_levels=[])
    result.write_csv(tmp_path / "rows.csv")
    header = (tmp_path / "rows.csv").read_text().splitlines()[0].split(",")
    assert header == [*COLUMNS, "good_level"]
    assert result.filtered.episodes == 0 and math.isnan(result.filtered.goal_rate)


def test_invalid_arguments():
    with pytest.raises(ValueError):
        evaluate(right_jump, episodes=0)
    with pytest.raises(ValueError):
        evaluate(right_jump, episodes=2, num_envs=0)
    with pytest.raises(ValueError):
        evaluate(42, episodes=2)
    with pytest.raises(ValueError):
        evaluate(right_jump, episodes=2, device="cpu", rand_fraction=2.0)


# --- procgen backend -------------------------------------------------------------------------


@pytest.mark.procgen
def test_procgen_backend_through_make_vec():
    pytest.importorskip("procgen")
    kwargs = dict(
        env_id=coinrun_mg.PROCGEN_COINRUN_ENV_ID,
        episodes=10,
        num_envs=6,  # two chunks, the second one partly used
        device="cpu",
        obs_mode="pixels",
    )
    report = evaluate(right_jump, **kwargs)
    assert report.episodes == 10
    assert sum(report.to_dict()[f"{o}_rate"] for o in OUTCOMES) == pytest.approx(1.0)
    assert all(r["coin_randomized"] for r in report.rows)
    assert evaluate(right_jump, **kwargs).rows == report.rows
    # The good levels work on both CoinRun backends (tests/test_transfer.py), no other env.
    with pytest.raises(ValueError, match="reference_policy.*CartPole-v1"):
        evaluate(right_jump, env_id="CartPole-v1", episodes=2, reference_policy=right_jump)


def noisy_right(obs, noise):
    """A sampling policy of fixed action probabilities (mostly right) that takes the
    evaluator's per-episode noise, on any observation."""
    from coinrun_mg.agents.networks import sample_actions

    logits = torch.zeros(obs.shape[0], 15)
    logits[:, 6:9] = 2.0
    return sample_actions(logits, uniforms=noise)


@pytest.mark.procgen
def test_procgen_rows_do_not_depend_on_episodes_or_num_envs():
    pytest.importorskip("procgen")
    from coinrun_mg.eval import procgen_level_seeds

    kwargs = dict(
        env_id=coinrun_mg.PROCGEN_COINRUN_ENV_ID,
        seed=4,
        device="cpu",
        obs_mode="pixels",
        distribution_mode="easy",
        max_episode_steps=60,
    )
    short = evaluate(noisy_right, episodes=8, **kwargs)
    assert [r["level_seed"] for r in short.rows] == procgen_level_seeds(
        4, torch.arange(8), {}
    ).tolist()
    assert len({r["steps"] for r in short.rows}) > 1
    long = evaluate(noisy_right, episodes=12, **kwargs)
    narrow = evaluate(noisy_right, episodes=8, num_envs=3, **kwargs)
    assert long.rows[:8] == short.rows and narrow.rows == short.rows


# --- CLI ----------------------------------------------------------------------------------------


def test_eval_cli_on_a_tiny_checkpoint(tmp_path, capsys, monkeypatch):
    from coinrun_mg.agents import PPOConfig, train

    config = PPOConfig.from_profile(
        "quick",
        device="cpu",
        num_envs=16,
        num_steps=16,
        minibatch_size=64,
        total_steps=256,
        max_episode_steps=50,
        checkpoint_every=0,
        progress_bar=False,
    )
    result = train(config, tmp_path / "run")
    out_csv, out_json = tmp_path / "rows.csv", tmp_path / "new" / "folder" / "summary.json"
    argv = ["eval", str(result.checkpoint), "--episodes", "12", "--device", "cpu"]
    argv += ["--csv", str(out_csv), "--json", str(out_json), "--no-progress"]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "goal" in printed and "episodes 12" in printed
    summary = json.loads(out_json.read_text())
    assert summary["episodes"] == 12
    assert len(out_csv.read_text().splitlines()) == 13
    # The checkpoint's env kwargs (easy mode, 50 steps) carry over; the API agrees.
    report = evaluate(result.checkpoint, episodes=12, device="cpu")
    assert report.to_dict() == summary
    assert report.meta["env_kwargs"]["max_episode_steps"] == 50
    assert report.meta["env_kwargs"]["rand_fraction"] == 1.0

    def full_disk(self, path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(EvalReport, "write_csv", full_disk)
    assert cli.main(argv) == 2  # the table is printed, then the write fails in one line
    out, err = capsys.readouterr()
    assert "episodes 12" in out
    assert err == f"coinrun-mg eval: error: --csv {out_csv}: No space left on device\n"

    assert cli.main(["eval", str(tmp_path / "missing.pt"), "--device", "cpu"]) == 2
    with pytest.raises(SystemExit):
        cli.main(["eval", "--help"])
    assert "examples:" in capsys.readouterr().out


@pytest.mark.parametrize(
    "command, option",
    [("eval", "--csv"), ("eval", "--json"), ("video", "--out"), ("levels", "--out")],
)
def test_an_unwritable_output_fails_before_any_work(command, option, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    bad = blocker / "out" / "x"  # a folder cannot be made inside a file, not even as root
    argv = [command] if command == "levels" else [command, str(tmp_path / "missing.pt")]
    assert cli.main([*argv, option, str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    # One line naming the option and the path; before the checkpoint is even looked for.
    assert err.startswith(f"coinrun-mg {command}: error: {option} {bad}: cannot write into")
    assert "\n" not in err and "checkpoint" not in err
