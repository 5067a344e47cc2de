"""The ``coinrun-mg`` command line.

Each subcommand is one entry in :data:`COMMANDS`: a help line, a function that adds its
arguments to its subparser and a function that runs it and returns the exit code.
Adding ``train``, ``eval``, ``reproduce``, ``sweep``, ``video``, ``levels`` or ``play``
means writing those two functions and adding one entry.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.metadata
import io
import os
import platform
import sys
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import coinrun_mg
from coinrun_mg.envs.malloc import describe as malloc_description
from coinrun_mg.envs.malloc import tune_malloc

EPILOG = """\
examples:
  coinrun-mg info                 versions, torch build and devices, registered env ids
  python -m coinrun_mg info       the same, without the console script
  coinrun-mg info --help          help for one subcommand
  coinrun-mg train --profile quick --rand-fraction 0.02 --total-steps 1000000
                                  train a PPO agent (see coinrun-mg train --help)
  coinrun-mg reproduce            train fractions 0 and 0.02, evaluate, print the table
  coinrun-mg sweep --fractions 0,0.02,0.2 --seeds 3 --out sweeps/q
                                  fractions x seeds: report.json, episodes.csv, curve.png
  coinrun-mg eval runs/quick_f0_s1
                                  goal / proxy / died / timeout rates on test levels
  coinrun-mg video runs/quick_f0_s1 --episodes 4 --out videos
                                  one MP4 per test episode, outcome, coin and end marked
  coinrun-mg levels --seeds 0-15 --out levels.png
                                  pictures of whole levels
  coinrun-mg play                 play it yourself (pygame window)
"""

INFO_EPILOG = """\
examples:
  coinrun-mg info                 what is installed, and whether torch sees a GPU
  python -m coinrun_mg info       the same, without the console script
"""


@dataclass(frozen=True)
class Command:
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    epilog: str | None = None


# --- info -------------------------------------------------------------------------------


def _add_info_arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # `info` takes no options yet


def _distribution_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _procgen_status() -> str:
    # procgen drags in the old `gym`, which prints a deprecation banner on import:
    # keep it out of the report.
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            importlib.import_module("procgen")
    except Exception as exc:  # any failure means the backend is unusable
        return f"not importable ({type(exc).__name__}: {exc})"
    version = _distribution_version("procgen-mirror") or _distribution_version("procgen")
    return f"importable ({version})" if version else "importable"


def _torch_lines() -> list[str]:
    try:
        import torch
    except Exception as exc:
        return [f"torch:       not importable ({type(exc).__name__}: {exc})"]
    cuda_build = torch.version.cuda or "none, CPU only"
    cuda_available = torch.cuda.is_available()
    lines = [
        f"torch:       {torch.__version__} (CUDA build: {cuda_build})",
        f"  cuda:      available={cuda_available} devices={torch.cuda.device_count()}",
    ]
    if cuda_available:
        for index in range(torch.cuda.device_count()):
            lines.append(f"  cuda:{index}:    {torch.cuda.get_device_name(index)}")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        lines.append("  mps:       available")
    return lines


def _run_info(args: argparse.Namespace) -> int:
    del args
    import gymnasium
    import numpy

    env_ids = sorted(env_id for env_id in gymnasium.registry if env_id.startswith("coinrun_mg/"))
    lines = [
        f"coinrun-mg:  {coinrun_mg.__version__}",
        f"python:      {platform.python_version()} ({sys.executable})",
        *_torch_lines(),
        f"gymnasium:   {gymnasium.__version__}",
        f"numpy:       {numpy.__version__}",
        f"procgen:     {_procgen_status()}",
        f"malloc:      {malloc_description()}",
        "env ids:     " + (", ".join(env_ids) if env_ids else "(none registered)"),
    ]
    print("\n".join(lines))
    return 0


# --- train ------------------------------------------------------------------------------

TRAIN_EPILOG = """\
Every PPOConfig field is an option (--field-name); an option given on the command line
overrides the profile's value.  Without --profile a new run uses the paper profile on a
CUDA device and the quick profile otherwise (the paper's IMPALA CNN on pixels takes days
on a CPU).  Logs (TensorBoard), config.json and checkpoint.pt go to --run-dir (default:
runs/<profile>_f<rand-fraction>_s<seed>, for --game maze runs/maze-<profile>_f..._s...).

A --run-dir that already holds a run (a checkpoint, config.json or TensorBoard event
files) is refused unless --resume continues it or --overwrite moves it aside to
<run-dir>.replaced-<UTC time> (nothing is deleted).  --resume in a folder without a
checkpoint starts afresh and moves the old logs aside the same way.

Ctrl-C saves a checkpoint at the end of the current iteration, prints the command that
resumes from it and exits with status 130; a second Ctrl-C stops at once.

--eval-every N evaluates the agent every N steps on --eval-episodes test levels (every
coin moved) and training levels, and logs eval/goal_rate, eval/proxy_rate,
eval/died_rate, eval/timeout_rate and eval/train_coin_rate (native env only).

examples:
  coinrun-mg train --profile quick --rand-fraction 0.02 --total-steps 3000000 --seed 1
  coinrun-mg train --profile quick --rand-fraction 0.02 --total-steps 3000000 --seed 1 --resume
                              continue that run from its last checkpoint (after a kill)
  coinrun-mg train --run-dir runs/quick_f0.02_s1 --resume --total-steps 6000000
                              extend a finished run (the config is read from its checkpoint)
  coinrun-mg train --profile quick --run-dir runs/q --overwrite
                              a new run in runs/q; the old one goes to runs/q.replaced-<time>
  coinrun-mg train --profile quick --eval-every 500000 --eval-episodes 256
                              goal / proxy rates in TensorBoard while training
  coinrun-mg train --profile paper --device cuda --rand-fraction 0.02 --total-steps 200000000
                              the paper's setup (IMPALA CNN on pixels, hard mode): a GPU job
  coinrun-mg train --profile quick --obs-mode pixels --network impala --num-envs 64
  coinrun-mg train --game maze --rand-fraction 0.02 --seed 1
                              the Maze (its quick profile) in runs/maze-quick_f0.02_s1
  coinrun-mg train --profile paper --env-id coinrun_mg/ProcgenCoinRun-v0 --device cpu
                              train on stock procgen CoinRun through Gymnasium
  coinrun-mg train --profile quick --env-id coinrun_mg/ProcgenCoinRun-v0 --obs-mode symbolic
                              the quick agent on stock procgen CoinRun's symbolic view (the
                              native planes): evaluate it on either backend
  tensorboard --logdir runs   watch the curves
"""


def _add_train_arguments(parser: argparse.ArgumentParser) -> None:
    import dataclasses
    import typing

    try:
        from coinrun_mg.agents.config import CHOICES, PROFILES, PPOConfig
    except Exception as exc:  # keep the other subcommands usable (e.g. `info`)
        parser.description = f"unavailable: {type(exc).__name__}: {exc}"
        return

    parser.add_argument(
        "--profile",
        choices=tuple(PROFILES),
        default=None,
        help="named hyperparameter set: 'quick' (CPU: symbolic view, easy mode, MLP) "
        "or 'paper' (the defaults: IMPALA CNN, pixels, hard mode); default: paper on a CUDA "
        "device, quick otherwise, or with --resume the run's own config",
    )
    parser.add_argument("--run-dir", default=None, help="directory for logs and checkpoints")
    reuse = parser.add_mutually_exclusive_group()
    reuse.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --run-dir from its last checkpoint (starts afresh if none)",
    )
    reuse.add_argument(
        "--overwrite",
        action="store_true",
        help="move a run already in --run-dir aside (to <run-dir>.replaced-<UTC time>) and "
        "start a new one",
    )
    parser.add_argument(
        "--eval-episodes",
        type=int,
        default=256,
        metavar="N",
        help="episodes of each --eval-every evaluation, on test and on training levels "
        "(default 256)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    types = typing.get_type_hints(PPOConfig)
    group = parser.add_argument_group(
        "PPOConfig fields (the default, then a profile's value where it differs)"
    )
    for field in dataclasses.fields(PPOConfig):
        name, kind = field.name, types[field.name]
        default = field.default
        note = f"default: {default!r}"
        for profile, values in PROFILES.items():
            if name in values and values[name] != default:
                note += f"; {profile}: {values[name]!r}"
        kwargs: dict = {
            "dest": name,
            "default": argparse.SUPPRESS,
            "help": f"{field.metadata.get('help', '')} ({note})",
        }
        if name == "progress_bar":  # spelled --no-progress, as in the other commands
            kwargs["help"] = argparse.SUPPRESS
        elif name == "eval_every":  # the command attaches the goal / proxy evaluation
            kwargs["help"] = (
                "environment steps between goal / proxy evaluations, logged as eval/* "
                f"(0: none; native env only; see --eval-episodes) ({note})"
            )
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif kind in (int, float, str):
            kwargs["type"] = _step_count if name in STEP_FIELDS else kind
            kwargs["metavar"] = {int: "INT", float: "FLOAT", str: "STR"}[kind]
            if name in CHOICES:
                kwargs["choices"] = CHOICES[name]
                del kwargs["metavar"]
        else:  # tuple[float, float]
            kwargs.update(type=float, nargs=2, metavar=("LO", "HI"))
        group.add_argument("--" + name.replace("_", "-"), **kwargs)


def _run_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from coinrun_mg.agents.checkpoint import CheckpointWriteError
    from coinrun_mg.agents.config import PPOConfig, field_names
    from coinrun_mg.agents.ppo import CHECKPOINT_NAME, TrainingInterrupted, read_run_config, train
    from coinrun_mg.agents.run_dir import check_run_dir
    from coinrun_mg.envs import resolve_device

    overrides = {name: getattr(args, name) for name in field_names() if hasattr(args, name)}
    if "coin_region" in overrides:
        overrides["coin_region"] = tuple(overrides["coin_region"])
    if args.no_progress:
        overrides["progress_bar"] = False
    run_dir = None
    try:
        device = resolve_device(overrides.get("device", "auto"))
        profile = args.profile or ("paper" if device.type == "cuda" else "quick")
        config = PPOConfig.from_profile(profile, **overrides)
        name = profile if config.game == "coinrun" else f"{config.game}-{profile}"
        run_dir = Path(args.run_dir or f"runs/{name}_f{config.rand_fraction:g}_s{config.seed}")
        saved = read_run_config(run_dir) if args.resume else None
        if saved is not None and args.profile is None:
            config = saved.replace(**overrides)  # the run's own config, plus what was given
        elif args.profile is None and profile == "quick":
            print(
                f"no --profile on {device.type}: training the quick profile (symbolic view, "
                "MLP); --profile paper trains the paper's IMPALA CNN on pixels (a GPU job)",
                flush=True,
            )
        hooks = _train_hooks(config, args.eval_episodes)
        check_run_dir(run_dir, CHECKPOINT_NAME, resume=args.resume, overwrite=args.overwrite)
        what = "resuming" if saved is not None else "training"
        print(
            f"{what} {run_dir}: {config.total_steps} steps, {config.obs_mode} observations, "
            f"{config.network} network, rand_fraction={config.rand_fraction:g}, "
            f"device={resolve_device(config.device)} (tensorboard --logdir {run_dir})",
            flush=True,
        )
        result = train(config, run_dir, resume=args.resume, overwrite=args.overwrite, hooks=hooks)
    except ValueError as exc:
        print(f"coinrun-mg train: error: {exc}", file=sys.stderr)
        return 2
    except CheckpointWriteError as exc:  # e.g. a full disk: the last checkpoint is kept
        print(
            f"coinrun-mg train: error: {exc}; resume with: {_resume_command(run_dir)}",
            file=sys.stderr,
        )
        return 2
    except TrainingInterrupted as stop:
        print(
            f"\ncoinrun-mg train: interrupted at step {stop.global_step}; checkpoint "
            f"{stop.checkpoint}; resume with: {_resume_command(run_dir)}",
            file=sys.stderr,
        )
        return 130
    except KeyboardInterrupt:
        where = "before training started"
        if run_dir is not None:
            where = "at once; resume from the last periodic checkpoint, if any, with: "
            where += _resume_command(run_dir)
        print(f"\ncoinrun-mg train: interrupted {where}", file=sys.stderr)
        return 130
    coin_rate = result.stats.get("charts/coin_rate")
    tail = f", last coin rate {coin_rate:.2f}" if coin_rate is not None else ""
    print(f"done: {result.global_step} steps{tail}; checkpoint {result.checkpoint}")
    return 0


def _train_hooks(config, episodes: int) -> list:
    """The goal / proxy evaluation hook when --eval-every asks for it (native env only)."""
    from coinrun_mg.agents.config import NATIVE_ENV

    if config.eval_every <= 0:
        return []
    if config.env_id != NATIVE_ENV:
        raise ValueError(
            f"--eval-every {config.eval_every} evaluates on the native env only; this run "
            f"trains on env_id={config.env_id!r} (use --eval-every 0, or coinrun-mg eval "
            "on its checkpoint)"
        )
    if episodes < 1:
        raise ValueError(f"--eval-episodes {episodes} is invalid; it must be an int >= 1")
    from coinrun_mg.sweep import GoalProxyHook  # imported here: sweeps pull in more

    return [GoalProxyHook(episodes=episodes)]


def _resume_command(run_dir) -> str:
    import shlex

    return f"coinrun-mg train --run-dir {shlex.quote(str(run_dir))} --resume"


# --- eval -------------------------------------------------------------------------------

EVAL_EPILOG = """\
Plays the first episode of --episodes fresh test levels and classifies each by what
happened first: goal (coin), proxy (the original end), died, timeout.  Rates come with
Wilson 95% intervals.  The environment takes the checkpoint's training kwargs
(observations, difficulty), then the test configuration: --rand-fraction (default 1.0)
and end_terminates=True.

A Maze checkpoint (trained with --game maze) is evaluated on the Maze: goal is the
cheese, proxy entering the top-right corner region (corner_terminates=True), nothing
dies; the report also gives the rates on the decision levels (where the paths to the
cheese and to the corner part), which need no --reference.  --backend picks the
checkpoint's game's backend (Maze-v0 or ProcgenMaze-v0).

Episode i uses seed key --seed + i for its level and for the noise the policy samples
its actions with, on either backend: its row (level, steps, outcome, and the good-level
flag of --reference) is the same whatever --episodes and --num-envs, e.g. the first 100
rows of --episodes 200 are the rows of --episodes 100 (the network's output can differ
in its last bits with the batch size or the device, which changes an action only on an
exact tie).  On procgen the level seed of a key is the native one; procgen makes
another level of it.

examples:
  coinrun-mg eval runs/quick_f0.02_s1/checkpoint.pt
  coinrun-mg eval runs/quick_f0.02_s1 --device cpu --torch-threads 1 --rand-fraction 0
                              in-distribution coin rate (coins at the end), on the CPU
  coinrun-mg eval runs/quick_f0.02_s1 --episodes 10000 --csv eval.csv --json eval.json
  coinrun-mg eval runs/paper_f0_s1 --backend procgen --episodes 1000 --device cpu
  coinrun-mg eval runs/quick_f0.02_s1 --backend procgen --reference runs/quick_f0_s1
                              a symbolic agent trained natively, on stock procgen CoinRun
                              (the same planes), good levels from the reference there
  coinrun-mg eval runs/quick_f0.02_s1 --reference runs/quick_f0_s1
                              also report the paper's "good levels" (where the reference
                              agent, in the training config, never touches the moved coin)
"""


def _add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="checkpoint file or run directory")
    parser.add_argument(
        "--rand-fraction",
        type=float,
        default=1.0,
        help="fraction of moved coins, or cheeses on the Maze (default 1.0)",
    )
    parser.add_argument("--episodes", type=int, default=1000, help="episodes (default 1000)")
    parser.add_argument(
        "--backend",
        choices=("native", "procgen"),
        default=None,
        help="environment backend of the checkpoint's game (default: the one the checkpoint "
        "was trained on)",
    )
    parser.add_argument("--seed", type=int, default=0, help="first seed key (default 0)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda (default auto)")
    parser.add_argument(
        "--num-envs",
        type=int,
        default=None,
        help="envs stepped together (default min(episodes, 1024))",
    )
    parser.add_argument(
        "--reference",
        default=None,
        metavar="CHECKPOINT",
        help="reference agent (e.g. trained with rand_fraction 0) for the good-levels filter, "
        "run on the same backend (the Maze filters its decision levels without one)",
    )
    parser.add_argument("--csv", default=None, metavar="PATH", help="write per-episode rows")
    parser.add_argument("--json", default=None, metavar="PATH", help="write the summary")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=0,
        metavar="N",
        help="torch CPU threads (0: torch's default; 1 is often fastest on a busy machine)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _make_output_folders(
    command: str, outputs: dict[str, str | None], folders: tuple[str, ...] = ()
) -> bool:
    """Create the folder of every output file (option -> path; for the options in
    ``folders`` the path is the folder) and try writing there before any work, so that a
    bad path fails at once, in one line naming the option, not after the work is done."""
    for option, path in outputs.items():
        if path is None:
            continue
        folder = os.path.abspath(path)
        folder = folder if option in folders else os.path.dirname(folder)
        try:
            os.makedirs(folder, exist_ok=True)
            tempfile.TemporaryFile(dir=folder).close()  # can files be written there?
        except OSError as exc:
            print(
                f"coinrun-mg {command}: error: {option} {path}: cannot write into {folder} "
                f"({exc.strerror or exc})",
                file=sys.stderr,
            )
            return False
    return True


def _run_eval(args: argparse.Namespace) -> int:
    from coinrun_mg.eval import evaluate, resolve_policy, write_json
    from coinrun_mg.games import backend_env_id

    if not _make_output_folders("eval", {"--csv": args.csv, "--json": args.json}):
        return 2
    if args.torch_threads > 0:
        import torch

        torch.set_num_threads(args.torch_threads)
    try:
        # --backend names a backend of the checkpoint's own game (CoinRun or Maze).
        policy, _, trained_env_id = resolve_policy(args.checkpoint, args.device)
        env_id = None if args.backend is None else backend_env_id(args.backend, trained_env_id)
        report = evaluate(
            policy,
            env_id=env_id,
            episodes=args.episodes,
            seed=args.seed,
            num_envs=args.num_envs,
            device=args.device,
            reference_policy=args.reference,
            progress=not args.no_progress and sys.stderr.isatty(),
            rand_fraction=args.rand_fraction,
        )
    except (ValueError, FileNotFoundError) as exc:
        print(f"coinrun-mg eval: error: {exc}", file=sys.stderr)
        return 2
    print(report.table())
    for option, path, write in (
        ("--csv", args.csv, report.write_csv),
        ("--json", args.json, lambda p: write_json(report, p)),
    ):
        try:
            if path:
                write(path)
        except OSError as exc:  # e.g. a full disk; the table above is the evaluation
            print(
                f"coinrun-mg eval: error: {option} {path}: {exc.strerror or exc}", file=sys.stderr
            )
            return 2
    return 0


# --- sweep and reproduce ----------------------------------------------------------------

SWEEP_EPILOG = """\
Trains one agent per (training fraction, seed) in OUT/runs/f<fraction>_s<seed>/ and
evaluates each: the coin rate in its training configuration, and goal / proxy / died /
timeout rates on test levels (every coin moved), on the paper's good levels (the
fraction-0 agent of the same seed is the reference) and on all levels.  Writes
OUT/report.json, OUT/episodes.csv and OUT/curve.png (the misgeneralization curve) and
prints a table of means across seeds with 95% intervals (with one seed: the run's Wilson
interval over its test episodes).  Without fraction 0 in --fractions there is no
reference agent: the test rates are then on all levels, and the table says so.

One sweep at a time per OUT: a sweep holds OUT/.sweep.lock (naming its pid, host, start
time and command) until it ends; a second sweep into the same OUT is refused at once
(exit 2) with the holder's pid, host and start time.  The lock goes with its process, so
a sweep that was killed leaves no lock that needs removing by hand.  An OUT that cannot
be written is refused before any training (exit 2).

Executors: local (default) runs one run after another, or --workers N runs at once in
separate processes; ray makes each run a Ray task (--cpus-per-run CPUs, and a GPU when
the device is cuda, or auto on a cluster with GPUs; --gpus-per-run overrides) on a local
Ray instance (--workers runs at once; default: all CPUs) or on the cluster at --address.
Ray is optional: pip install "coinrun-mg[ray]".

Resumable: run the same command again after a kill, Ctrl-C or a failure; finished runs
(those with OUT/runs/*/result.json) are not redone, a half-trained run continues from
its checkpoint, and a run that failed is tried again.  A failing run is retried
--retries times, then reported in report.json ("failed") without stopping the others;
a failure that a retry cannot fix (a bad setting, a damaged checkpoint, a missing
package, no permission / read-only / disk full) is reported at once, not retried.

--seeds N means seeds 0..N-1; a comma-separated list (e.g. 1,2 or 7,) gives the seeds.

--eval-backends native,procgen tests every agent on each backend of its game as well
(the same level seeds, every coin moved; on CoinRun the good levels come from the
fraction-0 agent run on that backend): each run's result.json gains "transfer", the
report a "transfer" section (goal / proxy / died / timeout rates per backend with 95%
intervals), OUT/transfer_episodes.csv the episodes with their backend, and a second
table shows the backends side by side.  Finished runs without it are evaluated again
(not retrained).  procgen: pip install "coinrun-mg[procgen]".

examples:
  coinrun-mg sweep --fractions 0,0.02,0.2,1 --seeds 3 --total-steps 3000000 --out sweeps/q
  coinrun-mg sweep --fractions 0,0.02 --seeds 1,2 --profile paper --device cuda --out sweeps/p
  coinrun-mg sweep --fractions 0,0.2 --seeds 1 --total-steps 20000 --episodes 64 --out /tmp/s
                              a smoke test of a couple of minutes on a CPU
  coinrun-mg sweep --fractions 0,0.2 --seeds 2 --executor ray --workers 2 --out /tmp/r
                              the same grid as Ray tasks on a local Ray instance
  coinrun-mg sweep --fractions 0,0.02,0.2 --seeds 3 --eval-backends native,procgen --out sweeps/q
                              also test every agent on stock procgen CoinRun (same level
                              seeds, good levels from the reference run there): a transfer
                              table, rates side by side per backend
  coinrun-mg sweep --fractions 0,0.01,0.02 --seeds 3 --curricula dr,plr --out sweeps/plr
                              domain randomization against robust PLR (level replay)
  coinrun-mg sweep --fractions 0,0.005,0.01,0.02,0.05 --seeds 5 --profile paper
      --executor ray --address auto --out sweeps/paper
                              on the Ray cluster this machine belongs to, a GPU per run
"""

REPRODUCE_EPILOG = """\
The paper's experiment with CPU-friendly defaults: the quick profile (symbolic view,
easy mode, MLP), training fractions 0 and 0.02, one seed (0), the profile's
step budget.  Same engine, outputs and resumability as `coinrun-mg sweep`; prints the
table (fraction, training coin rate, test goal rate, test proxy rate, with 95%
intervals) and the wall time.  Within a few million CPU steps a fraction of 0.02 may not
yet help (0.2 does): pass --fractions 0,0.02,0.2 to see the curve move.

examples:
  coinrun-mg reproduce                            quick profile, fractions 0,0.02, seed 0
  python -m coinrun_mg reproduce --out repro      the same, without the console script
  coinrun-mg reproduce --fractions 0,0.02,0.2 --seeds 3 --total-steps 3000000
  coinrun-mg reproduce --profile paper --device cuda --total-steps 200000000 --seeds 3
  coinrun-mg reproduce --eval-backends native,procgen
                              the same agents also tested on stock procgen CoinRun
"""


def _parse_fractions(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of numbers (e.g. 0,0.02,0.2)"
        ) from None
    if not values or not all(0.0 <= v <= 1.0 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: fractions must be numbers in [0, 1]")
    return values


def _parse_seeds(text: str) -> list[int]:
    try:
        if "," not in text:
            count = int(text)
            if count < 1:
                raise ValueError
            return list(range(count))
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of seeds >= 1 (e.g. 3: seeds 0, 1, 2) or a list of "
            "seeds (e.g. 1,2; one seed alone with a comma: 0,)"
        ) from None
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: seeds must be ints >= 0")
    return values


def _parse_backends(text: str) -> tuple[str, ...]:
    from coinrun_mg.games import BACKENDS

    values = tuple(part.strip() for part in text.split(",") if part.strip())
    bad = [v for v in values if v not in BACKENDS]
    if bad or not values:
        raise argparse.ArgumentTypeError(
            f"{text!r} is invalid; give backends from {', '.join(BACKENDS)} separated by commas"
        )
    return tuple(dict.fromkeys(values))


def _parse_curricula(text: str) -> list[str]:
    from coinrun_mg.agents.config import CURRICULA

    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in CURRICULA]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"{text!r}: curricula are a comma list of {CURRICULA}")
    return names


def _config_settings(items: Sequence[str]) -> dict:
    """``--set FIELD=VALUE`` items as PPOConfig overrides, each value read as its field's
    type (ValueError naming the item for an unknown field or a bad value)."""
    import typing

    from coinrun_mg.agents.config import PPOConfig, field_names

    types = typing.get_type_hints(PPOConfig)
    out: dict = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in field_names():
            raise ValueError(
                f"--set {item!r} is invalid; use FIELD=VALUE with a PPOConfig field, e.g. "
                "plr_buffer_size=1000"
            )
        kind = types[name]
        try:
            if kind is bool:
                if text.lower() not in ("true", "false", "1", "0"):
                    raise ValueError
                out[name] = text.lower() in ("true", "1")
            elif name in STEP_FIELDS:
                out[name] = _step_count(text)
            elif kind in (int, float, str):
                out[name] = kind(text)
            else:  # tuple[float, float]: LO,HI
                out[name] = tuple(float(v) for v in text.split(","))
        except (ValueError, argparse.ArgumentTypeError):
            raise ValueError(
                f"--set {item!r} is invalid; {name} takes {getattr(kind, '__name__', kind)} values"
            ) from None
    return out


# PPOConfig fields that count environment steps: they take 10M or 500k as --eval-at does.
STEP_FIELDS = ("total_steps", "checkpoint_every", "eval_every")


def _step_count(text: str) -> int:
    """An int (0 included, where a field allows it), or a count such as 2.5M or 500k."""
    from coinrun_mg.budgets import parse_steps

    try:
        return int(text)
    except ValueError:
        pass
    try:
        return parse_steps(text, name="steps")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parse_eval_at(text: str) -> list[int]:
    from coinrun_mg.budgets import parse_eval_at

    try:
        return parse_eval_at(text, name="--eval-at")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_sweep_arguments(
    parser: argparse.ArgumentParser,
    fractions: str = "0,0.02",
    seeds: str = "1",
    default_out: str = "sweeps",
) -> None:
    parser.add_argument(
        "--fractions",
        type=_parse_fractions,
        default=_parse_fractions(fractions),
        metavar="F,F,...",
        help=f"training fractions of levels with a moved coin (default {fractions})",
    )
    parser.add_argument(
        "--seeds",
        type=_parse_seeds,
        default=_parse_seeds(seeds),
        metavar="N|S,S,...",
        help=f"number of seeds (0..N-1) or a comma-separated list, '5,' for seed 5 alone "
        f"(default {seeds})",
    )
    parser.add_argument(
        "--profile",
        choices=("quick", "paper"),
        default="quick",
        help="hyperparameter profile (default quick: CPU-friendly)",
    )
    parser.add_argument(
        "--env",
        choices=("coinrun", "maze"),
        default="coinrun",
        help="the game: coinrun (the coin at the end) or maze (the cheese in the corner; "
        "test rates on decision levels); default coinrun",
    )
    parser.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help=f"output directory (default {default_out}/<profile>, {default_out}/maze-<profile>"
        " for the maze)",
    )
    parser.add_argument(
        "--total-steps",
        type=_step_count,
        default=None,
        metavar="INT",
        help="training steps per run, e.g. 20000000 or 20M (default: the profile's)",
    )
    parser.add_argument(
        "--episodes", type=int, default=1000, help="test episodes per evaluation (default 1000)"
    )
    parser.add_argument(
        "--eval-at",
        type=_parse_eval_at,
        default=[],
        metavar="STEPS,...",
        help="step budgets (e.g. 2.5M,5M,10M): keep each run's checkpoint there and "
        "evaluate it on the same test levels (budget_curve.png; default: none)",
    )
    parser.add_argument(
        "--eval-backends",
        type=_parse_backends,
        default=(),
        metavar="B,B",
        help="also test every agent on these backends of its game (native, procgen), on the "
        "same level seeds: a transfer section in report.json and the printed table (default: "
        "none)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda (default auto)")
    parser.add_argument(
        "--hook-episodes",
        type=int,
        default=256,
        metavar="INT",
        help="episodes of the eval/* TensorBoard scalars during training (0: off; default 256)",
    )
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=0,
        metavar="N",
        help="torch CPU threads of runs in this process (0: torch's default; worker "
        "processes and Ray tasks: --cpus-per-run)",
    )
    parser.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="where runs go: local (this machine) or ray (Ray tasks; default local)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="runs at once: local processes, or the size of a local Ray instance "
        "(default: local 1, one after another, but for reproduce on a CPU one per run "
        "up to the CPU count; ray: all CPUs)",
    )
    parser.add_argument(
        "--address",
        default=None,
        metavar="ADDRESS",
        help="with --executor ray: a running Ray cluster (auto, HOST:6379 or ray://HOST:10001; "
        "default: start a local instance)",
    )
    parser.add_argument(
        "--cpus-per-run",
        type=float,
        default=None,
        metavar="N",
        help="CPUs (torch threads) per run: Ray's num_cpus (default 1), or each local "
        "worker process's threads (default: CPU count / workers)",
    )
    parser.add_argument(
        "--gpus-per-run",
        type=float,
        default=None,
        metavar="N",
        help="with --executor ray: GPUs per run (default: 1 if --device is cuda, or auto on "
        "a cluster with GPUs; else 0)",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=1,
        metavar="K",
        help="times a failed run is tried again before it is reported as failed (default 1)",
    )
    parser.add_argument(
        "--curricula",
        type=_parse_curricula,
        default=["dr"],
        metavar="C,C,...",
        help="level curricula to train each run with: dr (domain randomization) and/or plr "
        "(robust prioritized level replay); default dr",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="train nothing and write nothing: print the tables of the runs finished so far "
        "in OUT with these settings and name the others (safe while the sweep runs)",
    )
    parser.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="a PPOConfig field for every run, e.g. --set plr_buffer_size=1000 (repeatable; "
        "plr_* fields reach the plr runs only)",
    )


def _run_sweep_command(args: argparse.Namespace, name: str, default_out: str) -> int:
    import time

    from coinrun_mg.executors import make_executor
    from coinrun_mg.sweep import run_sweep
    from coinrun_mg.sweep_lock import SweepError
    from coinrun_mg.sweep_report import format_table, table_note

    out = args.out or default_out
    started = time.time()
    try:
        if args.address is not None and args.executor != "ray":
            raise ValueError(f"--address {args.address} needs --executor ray")
        if args.gpus_per_run is not None and args.executor != "ray":
            raise ValueError(f"--gpus-per-run {args.gpus_per_run:g} needs --executor ray")
        _check_eval_at_option(args)
        workers = args.workers
        if workers is None and name == "reproduce" and args.executor == "local":
            workers = _reproduce_workers(args)
        executor = (
            "local"
            if args.report_only
            else make_executor(
                args.executor,
                workers=workers,
                address=args.address,
                cpus_per_run=args.cpus_per_run,
                gpus_per_run=args.gpus_per_run,
            )
        )
        report = run_sweep(
            args.fractions,
            args.seeds,
            profile=args.profile,
            out_dir=out,
            total_steps=args.total_steps,
            episodes=args.episodes,
            device=args.device,
            hook_episodes=args.hook_episodes,
            executor=executor,
            retries=args.retries,
            torch_threads=args.torch_threads,
            eval_at=args.eval_at,
            eval_backends=args.eval_backends,
            curricula=args.curricula,
            overrides={**_config_settings(args.settings), **_game_overrides(args)},
            report_only=args.report_only,
        )
    # ImportError: --executor ray without Ray; SweepError: OUT locked or unwritable;
    # OSError: writing the outputs at the end failed.
    except (ValueError, ImportError, SweepError, OSError) as exc:
        print(f"coinrun-mg {name}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"\ncoinrun-mg {name}: interrupted; finished runs are kept in {out}/runs: "
            "run the same command again to resume",
            file=sys.stderr,
        )
        return 130
    if args.report_only and not report["runs"]:
        print(f"no run in {out} has finished with these settings")
        return 0
    print()
    print(format_table(report["aggregate"], report["runs"]))
    print(table_note(report["aggregate"]))
    for failed in report["failed"]:
        why = f" ({failed['not_retried']})" if failed.get("not_retried") else ""
        which = f"{failed['curriculum']} " if "curriculum" in failed else ""
        print(
            f"FAILED {which}f={failed['rand_fraction']:g} seed={failed['seed']}: "
            f"{failed['error']}{why}"
        )
    outputs = f"wrote {out}/report.json, {out}/episodes.csv, {out}/curve.png"
    if report.get("budget_aggregate") is not None:
        from coinrun_mg.budgets import format_budget_table, format_halving
        from coinrun_mg.sweep_report import levels_label

        levels = levels_label(report["budget_aggregate"])
        print()
        print(format_budget_table(report["budget_aggregate"]))
        print(f"(mean [{report['budget_interval']}]; test: {levels}, the same at every budget)")
        halving = format_halving(report.get("budget_halving", []))
        if halving:
            print(halving)
        outputs += f", {out}/budget_episodes.csv, {out}/budget_curve.png"
    if report.get("transfer") is not None:
        from coinrun_mg.transfer import TRANSFER_CSV, format_transfer_table

        print()
        print(format_transfer_table(report["transfer"]))
        outputs += f", {out}/{TRANSFER_CSV}"
    if report.get("curriculum_contrast"):
        from coinrun_mg.replay_stats import format_contrast

        print()
        print(format_contrast(report["curriculum_contrast"]))
    if report.get("level_replay"):
        from coinrun_mg.replay_stats import REPLAY_PLOT, format_replay_table

        print()
        print(format_replay_table(report["level_replay"]))
        outputs += f", {out}/{REPLAY_PLOT}"
    if args.report_only:
        pending = report["pending"]
        outputs = f"{len(report['runs'])} of {len(report['runs']) + len(pending)} runs finished"
        if pending:
            outputs += f"; pending: {', '.join(_progress_text(n, report) for n in pending)}"
        outputs += "; nothing written (--report-only)"
    print(outputs)
    print(f"wall time {time.time() - started:.1f} s")
    return 1 if report["failed"] else 0


def _progress_text(name: str, report: dict) -> str:
    """A pending run with how far it has trained: ``f0_s2 (15,007,744 of 20,000,000 steps)``."""
    step = report.get("progress", {}).get(name)
    total = report["settings"].get("total_steps")
    if step is None:
        return name
    if isinstance(step, str):  # why its checkpoint cannot be read
        return f"{name} ({step})"
    return f"{name} ({step:,}{f' of {total:,}' if total else ''} steps)"


def _check_eval_at_option(args: argparse.Namespace) -> None:
    """``--eval-at`` budgets within the runs' total steps (``ValueError`` naming it)."""
    if not args.eval_at:
        return
    from coinrun_mg.agents import PPOConfig
    from coinrun_mg.budgets import check_eval_at

    steps = {} if args.total_steps is None else {"total_steps": args.total_steps}
    total = PPOConfig.from_profile(args.profile, **steps, **_game_overrides(args)).total_steps
    check_eval_at(args.eval_at, total, name="--eval-at")


def _reproduce_workers(args: argparse.Namespace) -> int:
    """``reproduce``'s local runs at once: on a CPU, one process per run up to the CPU
    count (side by side, single-threaded runs train faster than one after another with
    all threads each); on CUDA one after another."""
    from coinrun_mg.envs.checks import resolve_device

    if resolve_device(args.device).type != "cpu":
        return 1
    return max(1, min(len(args.fractions) * len(args.seeds), os.cpu_count() or 1))


def _add_reproduce_arguments(parser: argparse.ArgumentParser) -> None:
    _add_sweep_arguments(parser, fractions="0,0.02", seeds="1", default_out="reproduce")


def _game_overrides(args: argparse.Namespace) -> dict:
    """The PPOConfig overrides of ``--env`` (none for CoinRun, the default)."""
    return {"game": "maze"} if args.env == "maze" else {}


def _out_name(args: argparse.Namespace) -> str:
    return f"maze-{args.profile}" if args.env == "maze" else args.profile


def _run_sweep(args: argparse.Namespace) -> int:
    return _run_sweep_command(args, "sweep", f"sweeps/{_out_name(args)}")


def _run_reproduce(args: argparse.Namespace) -> int:
    return _run_sweep_command(args, "reproduce", f"reproduce/{_out_name(args)}")


# --- video, levels, play ----------------------------------------------------------------

VIDEO_EPILOG = """\
Plays --episodes test episodes as `coinrun-mg eval` does (the checkpoint's training
kwargs, then --rand-fraction, default 1.0, and end_terminates=True; episode i uses
seed key --seed + i for its level and its action noise) on the native environment and
writes one video per episode:
DIR/episodeNNN_levelSEED_OUTCOME.mp4 (H.264, PyAV: pip install 'coinrun-mg[video]'),
or .gif when MP4 cannot be written.  Each frame shows the episode and level, the step
and the outcome (GOAL / PROXY / DIED / TIMEOUT), the agent-centred view with the coin
and the original end labelled (arrows point to them when off-screen) and a map of the
whole level; the last frame is held with a banner naming the outcome.  The same
command gives the same videos.  Video i shows episode i of `coinrun-mg eval` with the
same --seed on the native backend, with its outcome and steps, whatever --episodes and
--num-envs either command uses.  A Maze checkpoint (train --game maze) plays the Maze in
its test configuration (every cheese moved, corner_terminates=True); its frames show the
whole maze from above (the corner region tinted, a colour key) and say whether the level
is a decision level.

examples:
  coinrun-mg video runs/quick_f0_s1/checkpoint.pt --episodes 4 --rand-fraction 1.0 --out videos
  coinrun-mg video runs/quick_f0_s1 --episodes 8 --seed 100 --format gif --size 256
                              small GIFs, e.g. for a web page
  coinrun-mg video runs/quick_f0.02_s1 --rand-fraction 0 --out videos/train
                              the training configuration (coins at the end)
  coinrun-mg video runs/paper_f0_s1 --backend native
                              a policy trained on procgen, played on the native env
  coinrun-mg video runs/m000 --episodes 4 --out videos/maze
                              a Maze agent: cheese (GOAL) or the corner (PROXY)?
"""

LEVELS_EPILOG = """\
Draws whole levels (the start, the coin, the original end, enemies and hazards marked)
in a grid, each captioned with its level seed, the number the env reports as
info["level_seed"] and the videos put in their file names.  --rand-fraction and
--distribution-mode decide the levels exactly as in the environment.

examples:
  coinrun-mg levels --seeds 0-15 --out levels.png
  coinrun-mg levels --seeds 0-7 --rand-fraction 1.0 --columns 2 --tile-px 12 --out moved.png
                              every coin moved, next to its original end
  coinrun-mg levels --seeds 636321409 --distribution-mode easy --rand-fraction 1 --out one.png
                              the level of a video (its file name holds the seed)
"""

PLAY_EPILOG = """\
Opens a window (pygame: pip install 'coinrun-mg[play]') and lets you play.  Keys:
arrows or WASD move, up / space / W jump, R restarts the level, N or Enter goes to the
next level (seed + 1), Esc quits.  The header shows the outcome as the evaluation would
classify it; with the default end_terminates off, touching the original end (PROXY)
does not end the episode.  --env maze plays the Maze: the arrows move the mouse a cell
per step, --end-terminates ends the episode in the top-right corner region (PROXY),
--corner-size sets that region.  Needs a display: on a machine without one, use
xvfb-run coinrun-mg play, or watch an agent with coinrun-mg video instead.

examples:
  coinrun-mg play
  coinrun-mg play --env maze --distribution-mode easy --fps 6 --rand-fraction 1
                                                      a Maze, the cheese anywhere
  coinrun-mg play --seed 7 --rand-fraction 1.0        every coin moved
  coinrun-mg play --distribution-mode easy --fps 10   easy levels, slower
"""


def _seed_list(text: str) -> list[int]:
    from coinrun_mg.pictures import parse_seed_list

    try:
        return parse_seed_list(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_level_kwargs(parser: argparse.ArgumentParser, rand_fraction: float) -> None:
    parser.add_argument(
        "--rand-fraction",
        type=float,
        default=rand_fraction,
        help=f"fraction of levels with a moved coin (default {rand_fraction:g})",
    )
    parser.add_argument(
        "--distribution-mode",
        choices=("easy", "hard"),
        default="hard",
        help="procgen's level distribution (default hard)",
    )
    parser.add_argument(
        "--coin-placement",
        choices=("section", "anywhere"),
        default="section",
        help="where a moved coin goes (default section)",
    )


def _add_video_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="checkpoint file or run directory")
    parser.add_argument(
        "--episodes", type=int, default=4, help="episodes, one video each (default 4)"
    )
    parser.add_argument(
        "--rand-fraction",
        type=float,
        default=1.0,
        help="fraction of moved coins, or cheeses on the Maze (default 1.0)",
    )
    parser.add_argument(
        "--out", default="videos", metavar="DIR", help="output directory (default videos)"
    )
    parser.add_argument("--seed", type=int, default=0, help="first seed key (default 0)")
    parser.add_argument(
        "--backend",
        choices=("native",),
        default=None,
        help="native: play a policy trained on another backend on the native env (videos "
        "are drawn from its state; default: the checkpoint's, which must be native)",
    )
    parser.add_argument("--fps", type=float, default=15.0, help="frames per second (default 15)")
    parser.add_argument(
        "--size",
        type=int,
        default=512,
        help="frame width in pixels, a multiple of 16 (default 512: 512x688 frames)",
    )
    parser.add_argument(
        "--format",
        choices=("auto", "mp4", "gif"),
        default="auto",
        help="auto: MP4 if PyAV or imageio-ffmpeg works, else GIF (default auto)",
    )
    parser.add_argument(
        "--hold", type=float, default=1.0, metavar="SECONDS", help="outcome banner (default 1)"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda (default auto)")
    parser.add_argument(
        "--num-envs",
        type=int,
        default=None,
        help="episodes stepped together (default min(episodes, 16))",
    )
    parser.add_argument(
        "--torch-threads", type=int, default=0, metavar="N", help="torch CPU threads (0: default)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _run_video(args: argparse.Namespace) -> int:
    from coinrun_mg.video import available_formats, record_videos

    if args.torch_threads > 0:
        import torch

        torch.set_num_threads(args.torch_threads)
    if args.format == "auto" and "mp4" not in available_formats():
        print(
            "note: MP4 needs PyAV (pip install 'coinrun-mg[video]'); writing GIF files",
            file=sys.stderr,
        )
    if not _make_output_folders("video", {"--out": args.out}, folders=("--out",)):
        return 2
    try:
        videos = record_videos(
            args.checkpoint,
            args.out,
            episodes=args.episodes,
            seed=args.seed,
            env_id=args.backend,
            device=args.device,
            num_envs=args.num_envs,
            fps=args.fps,
            size=args.size,
            video_format=args.format,
            hold_seconds=args.hold,
            progress=not args.no_progress and sys.stderr.isatty(),
            rand_fraction=args.rand_fraction,
        )
    except (ValueError, FileNotFoundError) as exc:
        print(f"coinrun-mg video: error: {exc}", file=sys.stderr)
        return 2
    for v in videos:
        print(f"{v.path}  {v.outcome:<7}  {v.steps:>4} steps  {v.frames:>4} frames")
    if videos:
        first = videos[0]
        print(f"wrote {len(videos)} videos ({first.width}x{first.height}) to {args.out}")
    return 0


def _add_levels_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--seeds",
        type=_seed_list,
        default=_seed_list("0-15"),
        metavar="SEEDS",
        help="level seeds: a range, a list or both, e.g. 0-15, 3,7,9 or 0-3,10 (default 0-15)",
    )
    _add_level_kwargs(parser, rand_fraction=0.0)
    parser.add_argument(
        "--env",
        choices=("coinrun", "maze"),
        default="coinrun",
        help="the game's levels: coinrun or maze (default coinrun)",
    )
    parser.add_argument(
        "--corner-size",
        type=int,
        default=1,
        help="maze: the top-right region holding an unmoved cheese (default 1)",
    )
    parser.add_argument("--columns", type=int, default=4, help="levels per row (default 4)")
    parser.add_argument("--tile-px", type=int, default=8, help="pixels per tile (default 8)")
    parser.add_argument("--no-labels", action="store_true", help="no start/coin/end labels")
    parser.add_argument("--out", default="levels.png", help="picture file (default levels.png)")


def _run_levels(args: argparse.Namespace) -> int:
    from coinrun_mg.pictures import save_level_grid

    if not _make_output_folders("levels", {"--out": args.out}):
        return 2
    try:
        common = dict(
            columns=args.columns,
            tile_px=args.tile_px,
            rand_fraction=args.rand_fraction,
            distribution_mode=args.distribution_mode,
        )
        if args.env == "maze":
            path = save_level_grid(
                args.out, args.seeds, game="maze", corner_size=args.corner_size, **common
            )
        else:
            path = save_level_grid(
                args.out,
                args.seeds,
                labels=not args.no_labels,
                coin_placement=args.coin_placement,
                **common,
            )
    except ValueError as exc:
        print(f"coinrun-mg levels: error: {exc}", file=sys.stderr)
        return 2
    from PIL import Image

    with Image.open(path) as image:
        width, height = image.size
    print(f"wrote {path} ({len(args.seeds)} levels, {width}x{height})")
    return 0


def _add_play_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=0, help="first level seed (default 0)")
    _add_level_kwargs(parser, rand_fraction=0.0)
    parser.add_argument(
        "--env",
        choices=("coinrun", "maze"),
        default="coinrun",
        help="the game: coinrun or maze (default coinrun)",
    )
    parser.add_argument(
        "--corner-size",
        type=int,
        default=1,
        help="maze: the top-right region holding an unmoved cheese (default 1)",
    )
    parser.add_argument(
        "--end-terminates",
        action="store_true",
        help="end the episode at the proxy: CoinRun's original end, Maze's corner region "
        "(the test configuration)",
    )
    parser.add_argument("--fps", type=float, default=15.0, help="steps per second (default 15)")
    parser.add_argument("--size", type=int, default=512, help="view size in pixels (default 512)")


def _run_play(args: argparse.Namespace) -> int:
    from coinrun_mg.play import play

    common = dict(rand_fraction=args.rand_fraction, distribution_mode=args.distribution_mode)
    if args.env == "maze":
        env_kwargs = dict(corner_size=args.corner_size, corner_terminates=args.end_terminates)
    else:
        env_kwargs = dict(coin_placement=args.coin_placement, end_terminates=args.end_terminates)
    try:
        return play(args.seed, fps=args.fps, size=args.size, game=args.env, **common, **env_kwargs)
    except ValueError as exc:
        print(f"coinrun-mg play: error: {exc}", file=sys.stderr)
        return 2


# --- registry of subcommands ------------------------------------------------------------

COMMANDS: dict[str, Command] = {
    "info": Command(
        help="print versions, the torch build and devices, and the registered env ids",
        add_arguments=_add_info_arguments,
        run=_run_info,
        epilog=INFO_EPILOG,
    ),
    "train": Command(
        help="train a PPO agent (TensorBoard logs, checkpoints, exact --resume)",
        add_arguments=_add_train_arguments,
        run=_run_train,
        epilog=TRAIN_EPILOG,
    ),
    "eval": Command(
        help="evaluate a checkpoint: goal / proxy / died / timeout rates on test levels",
        add_arguments=_add_eval_arguments,
        run=_run_eval,
        epilog=EVAL_EPILOG,
    ),
    "sweep": Command(
        help="train and evaluate over training fractions x seeds; report, CSV, curve (PNG)",
        add_arguments=_add_sweep_arguments,
        run=_run_sweep,
        epilog=SWEEP_EPILOG,
    ),
    "reproduce": Command(
        help="the paper's experiment with CPU defaults (quick profile, fractions 0,0.02)",
        add_arguments=_add_reproduce_arguments,
        run=_run_reproduce,
        epilog=REPRODUCE_EPILOG,
    ),
    "video": Command(
        help="videos of a checkpoint on test levels, with the outcome, coin and end marked",
        add_arguments=_add_video_arguments,
        run=_run_video,
        epilog=VIDEO_EPILOG,
    ),
    "levels": Command(
        help="draw whole levels in a grid (start, coin and original end marked) as a PNG",
        add_arguments=_add_levels_arguments,
        run=_run_levels,
        epilog=LEVELS_EPILOG,
    ),
    "play": Command(
        help="play CoinRun or Maze yourself in a window (keyboard; needs pygame and a display)",
        add_arguments=_add_play_arguments,
        run=_run_play,
        epilog=PLAY_EPILOG,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coinrun-mg",
        description="CoinRun environments, PPO agents and evaluation for goal misgeneralization.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {coinrun_mg.__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, command in COMMANDS.items():
        subparser = subparsers.add_parser(
            name,
            help=command.help,
            description=command.help,
            epilog=command.epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.add_arguments(subparser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    # Big CPU batches allocate tens of MiB per step; the command owns its process, so it
    # keeps those blocks in it rather than mapping them afresh each step (envs/malloc.py).
    tune_malloc()
    with warnings.catch_warnings():  # restores the process's warning display afterwards
        warnings.showwarning = _show_warning
        return COMMANDS[args.command].run(args)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one line each, like the errors (no source line echoed under them)."""
    print(f"coinrun-mg: warning: {message}", file=file or sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
