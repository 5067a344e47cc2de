"""The budget axis of sweeps (coinrun_mg.budgets): parsing and checking budgets,
train(checkpoint_at=) keeping checkpoints without changing training, resume, run_sweep
with eval_at end to end and its resume rule, the across-seed arithmetic, the CLI option.
Tiny budgets: PPO iterations of 16 envs x 16 steps, 16-episode evaluations."""

from __future__ import annotations

import csv
import json

import pytest
import torch

import coinrun_mg  # noqa: F401 - registers the env ids
from coinrun_mg import cli, sweep, sweep_report
from coinrun_mg.agents import PPOConfig, TrainingHook, train
from coinrun_mg.agents.checkpoint import CHECKPOINT_NAME, read_checkpoint
from coinrun_mg.agents.ppo import budget_path, budget_step
from coinrun_mg.budgets import (
    BUDGET_COLUMNS,
    aggregate_budgets,
    check_eval_at,
    format_budget_table,
    format_halving,
    halving_budgets,
    paired_ratios,
    parse_eval_at,
    parse_steps,
)
from coinrun_mg.sweep import run_sweep
from coinrun_mg.sweep_report import aggregate

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = dict(
    num_envs=16,
    num_steps=16,
    minibatch_size=64,
    max_episode_steps=20,
    checkpoint_every=0,
)


# --------------------------------------------------------------------------------------
# Parsing and checking
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, steps",
    [
        ("2.5M", 2_500_000),
        ("5M", 5_000_000),
        ("500k", 500_000),
        ("1.5K", 1_500),
        ("10_000", 10_000),
        (" 7 ", 7),
        ("0.25m", 250_000),
        ("20M", 20_000_000),
    ],
)
def test_parse_steps_accepts_ints_and_k_m_suffixes(text, steps):
    assert parse_steps(text) == steps


@pytest.mark.parametrize("text", ["", "x", "-5", "0", "0k", "1.5", "2.5k5", "1e6", "5G", "M"])
def test_parse_steps_rejects_bad_values_in_one_line(text):
    with pytest.raises(ValueError) as info:
        parse_steps(text, name="--eval-at")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"--eval-at value {text!r} is invalid")
    assert "2.5M" in message  # says what is accepted


def test_parse_eval_at_splits_on_commas():
    assert parse_eval_at("2.5M,5M, 10M,20M") == [2_500_000, 5_000_000, 10_000_000, 20_000_000]
    with pytest.raises(ValueError, match="empty"):
        parse_eval_at(" , ")


def test_check_eval_at_sorts_and_rejects_out_of_range():
    assert check_eval_at([500, 100, 500, 1000], 1000) == (100, 500, 1000)
    assert check_eval_at([], 1000) == ()
    with pytest.raises(ValueError, match=r"eval_at value 1001 .*total_steps=1000"):
        check_eval_at([100, 1001], 1000)
    for bad in (0, -3, True, 2.5, "100"):
        with pytest.raises(ValueError, match="eval_at value"):
            check_eval_at([bad], 1000)


def test_budget_step_is_the_first_iteration_boundary_at_or_after_the_budget():
    assert [budget_step(b, 256) for b in (1, 255, 256, 257, 768)] == [256, 256, 256, 512, 768]


# --------------------------------------------------------------------------------------
# train(checkpoint_at=)
# --------------------------------------------------------------------------------------


def _config(**overrides) -> PPOConfig:
    settings = dict(device="cpu", total_steps=1024, rand_fraction=0.5, progress_bar=False)
    return PPOConfig.from_profile("quick", **{**settings, **TINY, **overrides})


class _Killed(Exception):
    pass


class _KillAt(TrainingHook):
    """Stands in for a kill: raises before the iteration's checkpoints are written."""

    def __init__(self, step: int):
        self.every_steps = step

    def __call__(self, step, policy, writer):
        raise _Killed(step)


def _same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_train_keeps_budget_checkpoints_and_trains_the_same(tmp_path):
    plain = train(_config(), tmp_path / "plain")
    kept = train(_config(), tmp_path / "kept", checkpoint_at=(200, 600, 1024))
    assert _same_weights(plain.agent.state_dict(), kept.agent.state_dict())
    assert not (tmp_path / "plain" / "checkpoints").exists()

    names = sorted(p.name for p in (tmp_path / "kept" / "checkpoints").iterdir())
    assert names == [f"step_{s:012d}.pt" for s in (256, 768, 1024)]
    for step in (256, 768, 1024):
        data = read_checkpoint(budget_path(tmp_path / "kept", step))
        assert data["global_step"] == step
    final = read_checkpoint(tmp_path / "kept" / CHECKPOINT_NAME)
    last = read_checkpoint(budget_path(tmp_path / "kept", 1024))
    assert _same_weights(final["model"], last["model"])
    early = read_checkpoint(budget_path(tmp_path / "kept", 256))
    assert not _same_weights(early["model"], last["model"])  # training went on after it


def test_resumed_train_writes_the_remaining_budgets_only(tmp_path):
    budgets = (256, 768, 1024)
    whole = tmp_path / "whole"
    train(_config(), whole, checkpoint_at=budgets)

    run = tmp_path / "killed"
    config = _config(checkpoint_every=512)
    with pytest.raises(_Killed):
        train(config, run, checkpoint_at=budgets, hooks=[_KillAt(768)])  # dies in iteration 3
    assert read_checkpoint(run / CHECKPOINT_NAME)["global_step"] == 512
    assert budget_path(run, 256).exists() and not budget_path(run, 768).exists()
    first = budget_path(run, 256).stat().st_mtime_ns

    resumed = train(config, run, resume=True, checkpoint_at=budgets)
    assert resumed.global_step == 1024
    assert budget_path(run, 256).stat().st_mtime_ns == first  # passed before: not rewritten
    for step in budgets:  # on the CPU a resumed run is bit-identical
        a = read_checkpoint(budget_path(whole, step))["model"]
        b = read_checkpoint(budget_path(run, step))["model"]
        assert _same_weights(a, b), step


def test_train_refuses_a_budget_passed_without_its_checkpoint(tmp_path):
    train(_config(total_steps=512), tmp_path, checkpoint_at=(512,))
    with pytest.raises(ValueError, match=r"checkpoint_at budget 200 was passed at step 256"):
        train(_config(total_steps=768), tmp_path, resume=True, checkpoint_at=(200, 512))
    # A budget still ahead is fine: the run goes on and keeps it.
    result = train(_config(total_steps=768), tmp_path, resume=True, checkpoint_at=(512, 700))
    assert result.global_step == 768 and budget_path(tmp_path, 768).exists()


# --------------------------------------------------------------------------------------
# run_sweep(eval_at=)
# --------------------------------------------------------------------------------------


def _sweep(out_dir, eval_at=(), **kwargs):
    settings = dict(
        total_steps=768,  # three iterations
        episodes=16,
        device="cpu",
        overrides=TINY,
        hook_episodes=0,
        log=None,
        eval_at=eval_at,
    )
    settings.update(kwargs)
    return run_sweep((0.0, 0.5), [0], "quick", out_dir, **settings)


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_sweep_with_eval_at_evaluates_each_budget_on_the_final_good_levels(tmp_path):
    report = _sweep(tmp_path, eval_at=(300, 768))
    assert report["settings"]["eval_at"] == [300, 768]
    assert "good levels of the run's final test evaluation" in report["budget_levels"]
    for run in report["runs"]:
        assert run["status"] == "done" and run["filtered"]
        assert [(b["budget"], b["step"]) for b in run["budgets"]] == [(300, 512), (768, 768)]
        for record in run["budgets"]:
            assert record["filtered"]
            assert record["test_all"]["episodes"] == 16
            assert record["test"]["episodes"] == run["test"]["episodes"]  # same good levels
        # The last budget is the final checkpoint, evaluated the same way.
        assert run["budgets"][-1]["test"] == run["test"]
        assert run["budgets"][-1]["test_all"] == run["test_all"]

    agg = report["budget_aggregate"]
    assert [(a["rand_fraction"], a["budget"], a["step"]) for a in agg] == [
        (0.0, 300, 512),
        (0.0, 768, 768),
        (0.5, 300, 512),
        (0.5, 768, 768),
    ]
    for a in agg:
        run = next(r for r in report["runs"] if r["rand_fraction"] == a["rand_fraction"])
        record = next(b for b in run["budgets"] if b["budget"] == a["budget"])
        assert a["interval"] == "episodes" and a["seeds"] == [0]
        assert a["test_goal_rate"]["mean"] == record["test"]["goal_rate"]
        assert a["test_proxy_rate"]["ci"] == record["test"]["proxy_ci"]
    assert (tmp_path / "budget_curve.png").stat().st_size > 1000

    rows = _rows(tmp_path / "budget_episodes.csv")
    assert tuple(rows[0]) == BUDGET_COLUMNS
    assert len(rows) == 2 * 2 * 16  # runs x budgets x episodes
    finals = {}
    for r in report["runs"]:
        name = sweep_report.run_name(r["rand_fraction"], r["seed"])
        finals[r["rand_fraction"]] = _rows(tmp_path / "runs" / name / "test_episodes.csv")
    for row in rows:  # every budget on the final evaluation's levels and good-level flags
        final = finals[float(row["rand_fraction"])][int(row["episode"])]
        assert (row["level_seed"], row["good_level"]) == (final["level_seed"], final["good_level"])
        if row["step"] == "768":
            assert row["outcome"] == final["outcome"]
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["budget_aggregate"] == json.loads(json.dumps(agg))

    # Resumed with the same settings: nothing is redone.
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").rglob("result.json")}
    again = _sweep(tmp_path, eval_at=(768, 300))
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert again["budget_aggregate"] == report["budget_aggregate"]

    # Fewer budgets: the runs are redone (evaluations only; the checkpoints are kept).
    fewer = _sweep(tmp_path, eval_at=(768,))
    assert all([b["budget"] for b in r["budgets"]] == [768] for r in fewer["runs"])
    assert len(_rows(tmp_path / "budget_episodes.csv")) == 2 * 16

    # A budget the runs passed without keeping a checkpoint fails them, naming it.
    late = _sweep(tmp_path, eval_at=(256, 768), retries=1)
    assert [r["status"] for r in late["runs"]] == ["failed", "failed"]
    for failed in late["failed"]:
        assert "checkpoint_at budget 256 was passed at step 256" in failed["error"]
        assert "\n" not in failed["error"] and failed["not_retried"]


def test_sweep_without_eval_at_writes_no_budget_outputs(tmp_path):
    report = _sweep(tmp_path)
    for key in ("budget_aggregate", "budget_levels", "budget_interval"):
        assert key not in report
    assert "eval_at" not in report["settings"]
    assert set(report["outputs"]) == {"csv", "plot"}
    assert not (tmp_path / "budget_curve.png").exists()
    assert not (tmp_path / "budget_episodes.csv").exists()
    for run in report["runs"]:
        assert "budgets" not in run and "eval_at" not in run["evaluation"]
    assert not list(tmp_path.rglob("checkpoints"))


def test_run_sweep_rejects_budgets_beyond_total_steps(tmp_path):
    with pytest.raises(ValueError, match=r"eval_at value 1000 .*total_steps=768"):
        _sweep(tmp_path, eval_at=(256, 1000))
    assert not (tmp_path / "runs").exists()


# --------------------------------------------------------------------------------------
# Across seeds
# --------------------------------------------------------------------------------------


def _budget_run(fraction, seed, records, status="done"):
    budgets = [
        {
            "budget": budget,
            "step": step,
            "filtered": True,
            "test": {
                "goal_rate": goal,
                "goal_ci": [goal - 0.1, goal + 0.1],
                "proxy_rate": proxy,
                "proxy_ci": [proxy - 0.05, proxy + 0.05],
            },
        }  # fmt: skip
        for budget, step, goal, proxy in records
    ]
    return {"rand_fraction": fraction, "seed": seed, "status": status, "budgets": budgets}


def test_aggregate_budgets_across_seeds_matches_a_hand_computation():
    runs = [
        _budget_run(0.5, 0, [(1000, 1024, 0.30, 0.70), (2000, 2048, 0.5, 0.4)]),
        _budget_run(0.5, 1, [(1000, 1024, 0.32, 0.68), (2000, 2048, 0.5, 0.2)]),
        _budget_run(0.5, 2, [(1000, 1024, 0.9, 0.0)], status="failed"),  # left out
        _budget_run(0.0, 0, [(1000, 1024, 0.3, 0.6)]),
    ]
    agg = aggregate_budgets(runs)
    assert [(a["rand_fraction"], a["budget"], a["step"]) for a in agg] == [
        (0.0, 1000, 1024),
        (0.5, 1000, 1024),
        (0.5, 2000, 2048),
    ]
    one, two, same = agg
    # One seed: its value and its Wilson interval over episodes.
    assert one["interval"] == "episodes" and one["seeds"] == [0]
    assert one["test_goal_rate"]["mean"] == pytest.approx(0.3)
    assert one["test_goal_rate"]["ci"] == pytest.approx([0.2, 0.4])
    assert one["test_proxy_rate"]["ci"] == pytest.approx([0.55, 0.65])
    # Two seeds: goal 0.30 and 0.32 -> mean 0.31, std 0.0141421; half width Student's
    # t(1 df) 12.7062 * 0.0141421 / sqrt(2) = 0.127062; proxy 0.70 and 0.68 -> 0.69 +- that.
    assert two["interval"] == "seeds" and two["seeds"] == [0, 1]
    assert two["test_goal_rate"]["mean"] == pytest.approx(0.31)
    assert two["test_goal_rate"]["std"] == pytest.approx(0.0141421, abs=1e-6)
    assert two["test_goal_rate"]["ci"] == pytest.approx([0.182938, 0.437062], abs=1e-6)
    assert two["test_proxy_rate"]["ci"] == pytest.approx([0.562938, 0.817062], abs=1e-6)
    # Equal values: no spread, a zero-width interval.
    assert same["test_goal_rate"]["ci"] == pytest.approx([0.5, 0.5])
    assert same["test_proxy_rate"]["mean"] == pytest.approx(0.3)
    assert same["test_levels"] == "good levels"

    table = format_budget_table(agg)
    assert "0.310 [0.183, 0.437]" in table and "2,048" in table


def test_halving_budget_is_the_first_budget_at_half_the_control_proxy_rate():
    def run(fraction, proxy_rates):  # budgets 1000, 2000, 3000 (steps 1024, 2048, 3072)
        records = [(1000 * k, 1024 * k, 0.1, p) for k, p in enumerate(proxy_rates, 1)]
        return _budget_run(fraction, 0, records)

    runs = [
        run(0.0, [0.8, 0.8, 0.6]),
        run(0.02, [0.6, 0.4, 0.2]),
        run(0.2, [0.72, 0.52, 0.4]),
        _budget_run(0.5, 0, [(4000, 4096, 0.9, 0.0)]),  # no control at 4000: no ratio
    ]
    two, twenty, half = halving_budgets(aggregate_budgets(runs))
    assert [r["ratio"] for r in two["ratios"]] == pytest.approx([0.75, 0.5, 1 / 3])
    assert two["halved_at"] == 2000  # exactly one half counts
    assert [r["ratio"] for r in twenty["ratios"]] == pytest.approx([0.9, 0.65, 2 / 3])
    assert twenty["halved_at"] is None  # it gets closer, then further: no halving
    assert half == {"rand_fraction": 0.5, "ratios": [], "halved_at": None}
    assert format_halving([two, twenty, half]).splitlines() == [
        "fraction 0.02: proxy rate / fraction 0's 0.75 (1k), 0.50 (2k), 0.33 (3k); "
        "halves it first at 2k",
        "fraction 0.2: proxy rate / fraction 0's 0.90 (1k), 0.65 (2k), 0.67 (3k); "
        "does not halve it by 3k",
    ]


def test_paired_ratios_seed_by_seed_match_a_hand_computation():
    def run(fraction, seed, proxy_rates):  # budgets 1000, 2000
        records = [(1000 * k, 1024 * k, 0.1, p) for k, p in enumerate(proxy_rates, 1)]
        return _budget_run(fraction, seed, records)

    runs = [
        run(0.0, 0, [0.8, 0.8]),
        run(0.0, 1, [0.6, 0.0]),  # a zero control rate: seed 1 has no ratio at 2000
        run(0.0, 2, [0.5, 0.5]),
        run(0.02, 0, [0.4, 0.2]),
        run(0.02, 1, [0.3, 0.1]),
        run(0.02, 2, [0.6, 0.25]),  # its ratio passes 1 at 1000: the interval is not clipped
        run(0.02, 3, [0.1, 0.1]),  # no fraction-0 run of seed 3: left out
    ]
    paired = paired_ratios(runs)
    first = paired[(0.02, 1000)]
    # Ratios 0.5, 0.5, 1.2: mean 0.733333, std 0.404145; half width t(2 df) 4.3027 (the
    # package's table) * std / sqrt(3) = 1.003963.
    assert first["seeds"] == [0, 1, 2] and first["values"] == pytest.approx([0.5, 0.5, 1.2])
    assert first["mean"] == pytest.approx(0.733333, abs=1e-6)
    assert first["std"] == pytest.approx(0.404145, abs=1e-6)
    assert first["ci"] == pytest.approx([-0.270630, 1.737297], abs=1e-6)  # not clipped
    second = paired[(0.02, 2000)]
    assert second["seeds"] == [0, 2] and second["values"] == pytest.approx([0.25, 0.5])
    # Two seeds: 0.375 +- 12.7062 * 0.176777 / sqrt(2) = 0.375 +- 1.588275.
    assert second["ci"] == pytest.approx([-1.213275, 1.963275], abs=1e-6)
    single = paired_ratios([run(0.0, 0, [0.8]), run(0.02, 0, [0.2])])[(0.02, 1000)]
    assert (single["mean"], single["ci"]) == (pytest.approx(0.25), None)

    halving = halving_budgets(aggregate_budgets(runs), runs)
    assert halving[0]["ratios"][0]["paired"] == first  # beside the ratio of the means
    assert format_halving(halving).splitlines()[1] == (
        "  paired by seed, mean [95% interval]: 0.73 [-0.27, 1.74] (1k), 0.38 [-1.21, 1.96] (2k)"
    )


# --------------------------------------------------------------------------------------
# The CLI
# --------------------------------------------------------------------------------------


def test_cli_eval_at_option(tmp_path, capsys, monkeypatch):
    calls = []
    agg = aggregate_budgets([_budget_run(0.0, 0, [(2_500_000, 2_506_752, 0.25, 0.5)])])

    def fake_run_sweep(fractions, seeds, **kwargs):
        calls.append(kwargs)
        report = {"aggregate": aggregate([]), "runs": [], "failed": []}
        if kwargs["eval_at"]:
            report.update(budget_aggregate=agg, budget_interval="I", budget_levels="L")
        return report

    monkeypatch.setattr(sweep, "run_sweep", fake_run_sweep)
    for command in ("sweep", "reproduce"):
        args = [command, "--out", str(tmp_path), "--total-steps", "20000000"]
        assert cli.main([*args, "--eval-at", "2.5M,5M,10M,20M"]) == 0
        assert calls[-1]["eval_at"] == [2_500_000, 5_000_000, 10_000_000, 20_000_000]
        out = capsys.readouterr().out
        assert "2,506,752" in out and "0.250 [" in out and "budget_curve.png" in out
        assert "good levels, the same at every budget" in out

    assert cli.main(["sweep", "--out", str(tmp_path)]) == 0
    assert calls[-1]["eval_at"] == []
    assert "budget" not in capsys.readouterr().out

    with pytest.raises(SystemExit) as info:
        cli.main(["sweep", "--eval-at", "2.5x"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--eval-at" in err and "'2.5x'" in err

    count = len(calls)
    args = ["sweep", "--out", str(tmp_path), "--total-steps", "1000", "--eval-at", "500,2k"]
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--eval-at value 2000" in err and "total_steps=1000" in err
    assert len(calls) == count  # refused before any run
