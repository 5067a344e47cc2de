#!/usr/bin/env python
"""Random-action throughput of a native core versus stock procgen's game, CoinRun or Maze.

Measures, in one run, for ``--game`` (``coinrun``, the default, or ``maze``):

* ``native``: ``CoinRunCore`` or ``MazeCore`` (``autoreset="same_step"``,
  ``check_actions=False``) for each observation mode and env count, on ``--device``.
  Actions are drawn on the device with ``torch.randint`` every step, inside the timed loop.
* ``procgen``: ``procgen.ProcgenGym3Env(env_name="coinrun")`` (or ``"maze"``) with numpy
  random actions (``env.act`` + ``env.observe`` per step), at the env counts up to
  ``--procgen-max`` (or ``--procgen-envs``).  Skipped with a note when procgen is not
  importable.

Every configuration runs ``--warmup`` untimed steps, then times ``--steps`` steps or, by
default, as many as fill about ``--seconds`` (at least ``--min-steps``).  CUDA is
synchronized before the clock is read.  Throughput is ``num_envs * steps / seconds``;
env creation, ``reset`` and filling the core's buffer of upcoming levels are timed
separately (``setup_s`` in the JSON).  ``episodes_ended`` counts the episodes that ended
inside the timed window (random agents rarely finish, so little level generation is timed).

Memory per env:
* native on CUDA: ``torch.cuda.max_memory_allocated`` during setup + stepping, minus what
  was allocated before, divided by ``num_envs`` ("cuda peak").
* native on CPU: bytes of every tensor field of ``core.state`` and ``core._bank``,
  what the symbolic view keeps between steps (padded level grids, pair tables, alive
  enemy slots), plus one observation, per env ("tensors").
  Step temporaries are not included.
* procgen: growth of the process's resident set (VmRSS) while the env is created and
  warmed up, per env ("RSS", approximate).

Prints a markdown table and writes JSON (results + hardware info) to ``--out``.

    python benchmarks/throughput.py                      # defaults (~2-5 min on 2 cores)
    python benchmarks/throughput.py --device cuda        # adds 65536 envs
    python benchmarks/throughput.py --envs 64,1024 --seconds 1 --no-procgen
    python benchmarks/throughput.py --game maze --compile off,on --procgen-envs 1,4,16,64,256,1024
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import gc
import json
import math
import os
import platform
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent

try:  # the installed package (pip install -e .)
    from coinrun_mg.envs.checks import resolve_device
    from coinrun_mg.envs.coinrun.config import CoinRunConfig
    from coinrun_mg.envs.coinrun.core import CoinRunCore
    from coinrun_mg.envs.coinrun.state import NUM_ACTIONS
    from coinrun_mg.envs.compile import COMPILE_WORDS, resolve_compile
    from coinrun_mg.envs.malloc import tune_malloc
    from coinrun_mg.envs.maze.config import MazeConfig
    from coinrun_mg.envs.maze.core import MazeCore
except ImportError:  # a plain checkout: envs/ is importable from the repository root
    sys.path.insert(0, str(REPO_ROOT))
    from envs.checks import resolve_device
    from envs.coinrun.config import CoinRunConfig
    from envs.coinrun.core import CoinRunCore
    from envs.coinrun.state import NUM_ACTIONS
    from envs.compile import COMPILE_WORDS, resolve_compile
    from envs.malloc import tune_malloc
    from envs.maze.config import MazeConfig
    from envs.maze.core import MazeCore

DEFAULT_ENVS_CPU = (64, 256, 1024, 4096, 16384)
DEFAULT_ENVS_CUDA = DEFAULT_ENVS_CPU + (65536,)
# --game -> the native config and core classes; procgen's env_name is the game's name.
# Both games use procgen's 15 actions (NUM_ACTIONS).
GAMES = {"coinrun": (CoinRunConfig, CoinRunCore), "maze": (MazeConfig, MazeCore)}


def game_of(args) -> str:
    """The game an argument namespace asks for (scripts without ``--game``: CoinRun)."""
    return getattr(args, "game", "coinrun")


def default_out(name: str, game: str) -> Path:
    """``benchmarks/out/NAME.json`` for CoinRun, ``NAME_maze.json`` for Maze."""
    suffix = "" if game == "coinrun" else f"_{game}"
    return REPO_ROOT / "benchmarks" / "out" / f"{name}{suffix}.json"


def add_game_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--game",
        default="coinrun",
        choices=tuple(GAMES),
        help="the game: the native core and procgen's env_name (default: coinrun)",
    )


# --------------------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------------------


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive ints, got {text!r}")
    return values


def _str_list(choices):
    def parse(text: str) -> list[str]:
        values = [v.strip() for v in text.split(",") if v.strip()]
        bad = [v for v in values if v not in choices]
        if not values or bad:
            raise argparse.ArgumentTypeError(f"expected a comma-separated subset of {choices}")
        return values

    return parse


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Random-action throughput (steps/s) of a native torch core (CoinRun or "
        "Maze) and of stock procgen's same game, with memory per env.",
    )
    add_game_argument(p)
    p.add_argument(
        "--device", default="auto", help="native env device: auto (default), cpu, cuda, cuda:N"
    )
    p.add_argument(
        "--envs",
        type=_int_list,
        default=None,
        help="comma-separated env counts (default: "
        f"{','.join(map(str, DEFAULT_ENVS_CPU))} on CPU, plus 65536 on CUDA)",
    )
    p.add_argument(
        "--obs",
        type=_str_list(("symbolic", "pixels")),
        default=["symbolic", "pixels"],
        help="native observation modes, comma-separated (default: symbolic,pixels)",
    )
    p.add_argument(
        "--distribution-mode", default="hard", choices=("easy", "hard"), help="(default: hard)"
    )
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="timed steps per configuration (default: as many as fit in --seconds)",
    )
    p.add_argument(
        "--seconds", type=float, default=3.0, help="target timed seconds per config (default: 3)"
    )
    p.add_argument(
        "--min-steps", type=int, default=5, help="fewest timed steps without --steps (default: 5)"
    )
    p.add_argument(
        "--max-steps",
        type=int,
        default=5000,
        help="most timed steps without --steps (default: 5000)",
    )
    p.add_argument("--warmup", type=int, default=5, help="untimed steps before timing (default: 5)")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads (default: os.cpu_count())",
    )
    p.add_argument(
        "--procgen-threads",
        type=int,
        default=None,
        help="procgen worker threads (default: same as --threads; procgen's own default is 4)",
    )
    p.add_argument(
        "--procgen-max",
        type=int,
        default=4096,
        help="largest env count run for procgen, default 4096 (it is memory-heavy: "
        "about 0.75 MiB per env)",
    )
    p.add_argument(
        "--procgen-envs",
        type=_int_list,
        default=None,
        help="procgen env counts (default: the --envs values <= --procgen-max)",
    )
    p.add_argument(
        "--compile",
        type=_str_list(tuple(COMPILE_WORDS)),
        default=["auto"],
        help="the core's compile=... settings to run, comma-separated (default: auto, "
        "which compiles on CUDA only); compiled rows are labelled 'native+compile' and "
        "compile during the warm-up",
    )
    p.add_argument("--no-procgen", action="store_true", help="skip the procgen baseline")
    p.add_argument("--no-native", action="store_true", help="skip the native env")
    add_malloc_argument(p)
    p.add_argument("--seed", type=int, default=0, help="env and action seed (default: 0)")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON results file (default: benchmarks/out/throughput.json, "
        "throughput_maze.json for --game maze)",
    )
    args = p.parse_args(argv)
    args.out = args.out or default_out("throughput", args.game)
    for name in ("steps", "threads", "procgen_threads"):
        v = getattr(args, name)
        if v is not None and v < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.warmup < 0 or args.seconds <= 0 or not 1 <= args.min_steps <= args.max_steps:
        p.error("need --warmup >= 0, --seconds > 0 and 1 <= --min-steps <= --max-steps")
    return args


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def add_malloc_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--default-malloc",
        action="store_true",
        help="leave glibc's malloc as it is; by default the script calls "
        "coinrun_mg.envs.malloc.tune_malloc(), as the coinrun-mg command does, so large "
        "CPU batches reuse their observation memory instead of mapping it afresh each step",
    )


def apply_malloc(args: argparse.Namespace) -> str:
    """Tune malloc unless ``--default-malloc``; returns what the results record."""
    if args.default_malloc:
        return "default"
    return "tune_malloc()" if tune_malloc() else "default (not glibc)"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rss_bytes() -> int | None:
    """Current resident set size of this process (Linux), or None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def tensor_bytes(obj) -> int:
    """Bytes of the tensor fields of a dataclass instance (0 for None)."""
    if obj is None:
        return 0
    total = 0
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if isinstance(v, torch.Tensor):
            total += v.numel() * v.element_size()
    return total


def timed_run(step, device: torch.device, args, on_start=None) -> tuple[int, float]:
    """Warm up, then time steps; returns ``(steps, seconds)``.

    ``on_start`` (if given) is called between the warm-up and the timed window.

    With ``--steps`` the count is fixed.  Otherwise the timed window runs in chunks until
    it has lasted ``--seconds`` and covered ``--min-steps`` steps (or hit ``--max-steps``);
    each chunk's size is the step count the rate so far predicts is still needed, so the
    whole window counts (no separate calibration run whose noise could mis-size it) and
    the device is synchronized only at chunk ends.
    """
    for _ in range(args.warmup):
        step()
    sync(device)
    if on_start is not None:
        on_start()
    t0 = time.perf_counter()
    if args.steps is not None:
        for _ in range(args.steps):
            step()
        sync(device)
        return args.steps, time.perf_counter() - t0
    done, chunk = 0, 1
    while True:
        for _ in range(chunk):
            step()
        sync(device)
        done += chunk
        elapsed = time.perf_counter() - t0
        if done >= args.max_steps or (elapsed >= args.seconds and done >= args.min_steps):
            return done, elapsed
        still_needed = max(
            math.ceil((args.seconds - elapsed) * done / elapsed), args.min_steps - done, 1
        )
        # Grow at most 4x per chunk so one fast early chunk cannot cause a long overshoot.
        chunk = min(still_needed, 4 * done, args.max_steps - done)


def _cleanup(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# --------------------------------------------------------------------------------------
# Native env
# --------------------------------------------------------------------------------------


@dataclasses.dataclass
class Bench:
    """One configuration, set up and ready to time.  ``step`` advances every env once,
    ``on_start`` marks the start of a timed window, and ``finish(steps, seconds)`` turns
    that window into a result (``result`` already holds what setup measured)."""

    result: dict
    device: torch.device
    step: Callable[[], None]
    on_start: Callable[[], None]
    finish: Callable[[int, float], dict]

    def run(self, args) -> dict:
        """Warm up, time one window (:func:`timed_run`) and return the result."""
        return self.finish(*timed_run(self.step, self.device, args, self.on_start))


def bench_native(n: int, obs_mode: str, device: torch.device, args, compile="auto") -> dict:
    return native_bench(n, obs_mode, device, args, compile).run(args)


def native_bench(n: int, obs_mode: str, device: torch.device, args, compile="auto") -> Bench:
    """Set up the game's core (``CoinRunCore`` or ``MazeCore``) for :func:`bench_native`
    (setup timed, steps not yet)."""
    compiled = resolve_compile(COMPILE_WORDS[compile], device)
    backend = "native+compile" if compiled else "native"
    setup = {"backend": backend, "obs": obs_mode, "envs": n, "device": str(device)}
    _cleanup(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base_alloc = torch.cuda.memory_allocated(device)
    rss0 = rss_bytes()

    t0 = time.perf_counter()
    config_class, core_class = GAMES[game_of(args)]
    config = config_class(obs_mode=obs_mode, distribution_mode=args.distribution_mode)
    core = core_class(
        n, config, device=device, autoreset="same_step", check_actions=False, compile=compiled
    )
    obs, _ = core.reset(seed=args.seed)
    # reset() leaves the buffer of upcoming levels empty, so the first episode to end would
    # generate the next level of *every* env inside the timed window (seconds at 16384
    # envs).  Fill it now, as part of setup, so the window sees the steady state: the
    # waiting envs' levels generated in one batch whenever num_envs/4 of them wait.
    if hasattr(core, "_fill_bank"):
        core._fill_bank()
        setup["prefilled_upcoming"] = True
    sync(device)
    setup["setup_s"] = time.perf_counter() - t0
    setup["obs_shape"] = list(obs.shape[1:])

    gen = torch.Generator(device=device)
    gen.manual_seed(args.seed)
    holder = {"obs": obs, "ended": torch.zeros((), dtype=torch.int64, device=device)}

    def step():
        actions = torch.randint(0, NUM_ACTIONS, (n,), device=device, generator=gen)
        out = core.step(actions)
        holder["obs"] = out[0]
        holder["ended"] += (out[2] | out[3]).sum()  # stays on the device: no sync

    def on_start():
        holder["ended_before"] = int(holder["ended"])

    def finish(steps: int, seconds: float) -> dict:
        result = dict(setup)
        obs = holder["obs"]
        result.update(steps=steps, seconds=seconds)
        result["episodes_ended"] = int(holder["ended"]) - holder["ended_before"]
        result["steps_per_s"] = n * steps / seconds

        obs_bytes = obs[0].numel() * obs.element_size()
        state_bytes = tensor_bytes(core.state) + tensor_bytes(core._bank)
        kept = [getattr(core, name, None) for name in ("_padded", "_pair_tables", "_walls")]
        kept += list(getattr(core, "_enemy_slots", None) or ())
        state_bytes += sum(t.numel() * t.element_size() for t in kept if t is not None)
        result["state_bytes_per_env"] = state_bytes / n
        result["obs_bytes_per_env"] = obs_bytes
        rss1 = rss_bytes()
        if rss0 is not None and rss1 is not None:
            result["rss_delta_bytes_per_env"] = (rss1 - rss0) / n
        if device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(device) - base_alloc
            result["cuda_peak_bytes_per_env"] = peak / n  # setup (level generation) included
            resident = torch.cuda.memory_allocated(device) - base_alloc
            result["cuda_resident_bytes_per_env"] = resident / n  # what stays allocated
            result["memory_bytes_per_env"] = peak / n
            result["memory_method"] = "cuda peak"
        else:
            result["memory_bytes_per_env"] = state_bytes / n + obs_bytes
            result["memory_method"] = "tensors"
        return result

    return Bench(setup, device, step, on_start, finish)  # _cleanup() frees core later


# --------------------------------------------------------------------------------------
# Stock procgen
# --------------------------------------------------------------------------------------


def import_procgen():
    """procgen's module, or the reason it cannot be used."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import procgen  # noqa: F401  (the gym deprecation banner goes to stderr)
        return procgen, None
    except Exception as e:  # ImportError, or a broken binary
        return None, (
            f"procgen is not importable ({type(e).__name__}: {e}); "
            "install it with pip install -e '.[procgen]'"
        )


def bench_procgen(procgen, n: int, args, threads: int) -> dict:
    return procgen_bench(procgen, n, args, threads).run(args)


def procgen_bench(procgen, n: int, args, threads: int) -> Bench:
    """Set up stock procgen's game (CoinRun or Maze) for :func:`bench_procgen` (setup
    timed)."""
    setup = {"backend": "procgen", "obs": "pixels", "envs": n, "device": "cpu"}
    gc.collect()
    rss0 = rss_bytes()
    t0 = time.perf_counter()
    env = procgen.ProcgenGym3Env(
        num=n,
        env_name=game_of(args),
        distribution_mode=args.distribution_mode,
        num_levels=0,
        start_level=0,
        rand_seed=args.seed,
        num_threads=threads,
    )
    _, obs, _ = env.observe()
    setup["setup_s"] = time.perf_counter() - t0
    setup["obs_shape"] = list(obs["rgb"].shape[1:])
    setup["procgen_threads"] = threads
    rng = np.random.default_rng(args.seed)

    ended = [0, 0]  # total, at the start of the timed window

    def step():
        env.act(rng.integers(0, NUM_ACTIONS, size=n, dtype=np.int32))
        ended[0] += int(env.observe()[2].sum())  # `first`: a new episode began

    def on_start():
        ended[1] = ended[0]

    def finish(steps: int, seconds: float) -> dict:
        result = dict(setup, steps=steps, seconds=seconds)
        result["episodes_ended"] = ended[0] - ended[1]
        result["steps_per_s"] = n * steps / seconds
        rss1 = rss_bytes()
        result["obs_bytes_per_env"] = int(np.prod(obs["rgb"].shape[1:]))
        if rss0 is not None and rss1 is not None:
            result["rss_delta_bytes_per_env"] = (rss1 - rss0) / n
            result["memory_bytes_per_env"] = (rss1 - rss0) / n
            result["memory_method"] = "RSS"
        return result

    return Bench(setup, torch.device("cpu"), step, on_start, finish)


# --------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------


def hardware_info(device: torch.device) -> dict:
    info = {
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "numpy_version": np.__version__,
        "device": str(device),
        "gpu_name": None,
    }
    if hasattr(os, "sched_getaffinity"):
        info["cpu_affinity_count"] = len(os.sched_getaffinity(0))
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    info["mem_total_bytes"] = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["gpu_name"] = props.name
        info["gpu_memory_bytes"] = props.total_memory
        info["cuda_version"] = torch.version.cuda
    for dist in ("procgen-mirror", "procgen", "gym3"):
        try:
            from importlib.metadata import version

            info[f"{dist}_version"] = version(dist)
        except Exception:
            pass
    try:
        info["git_commit"] = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"],
                cwd=REPO_ROOT,
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout.strip()
            or None
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        info["git_dirty"] = bool(dirty)
    except Exception:
        pass
    return info


def _fmt_bytes(b: float | None) -> str:
    if b is None:
        return "—"
    for unit, scale in (("MiB", 2**20), ("KiB", 2**10)):
        if b >= scale:
            return f"{b / scale:.1f} {unit}"
    return f"{b:.0f} B"


def add_ratios(results: list[dict]) -> float | None:
    """Annotate native results with ratios to procgen; returns procgen's best steps/s."""
    procgen = {
        r["envs"]: r["steps_per_s"]
        for r in results
        if r["backend"] == "procgen" and "steps_per_s" in r
    }
    best = max(procgen.values()) if procgen else None
    for r in results:
        if not r["backend"].startswith("native") or "steps_per_s" not in r:
            continue
        if r["envs"] in procgen:
            r["ratio_vs_procgen_same_envs"] = r["steps_per_s"] / procgen[r["envs"]]
        if best:
            r["ratio_vs_procgen_best"] = r["steps_per_s"] / best
    return best


def markdown_table(results: list[dict]) -> str:
    rows = [
        "| backend | obs | envs | steps/s | vs procgen (same envs) | vs procgen best "
        "| memory/env |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for r in results:
        if "error" in r:
            rows.append(
                f"| {r['backend']} | {r['obs']} | {r['envs']} | failed: {r['error'][:60]} | | | |"
            )
            continue
        same = r.get("ratio_vs_procgen_same_envs")
        best = r.get("ratio_vs_procgen_best")
        mem = r.get("memory_bytes_per_env")
        mem_txt = f"{_fmt_bytes(mem)} ({r['memory_method']})" if mem is not None else "—"
        rows.append(
            f"| {r['backend']} | {r['obs']} | {r['envs']} | {r['steps_per_s']:,.0f} | "
            f"{f'{same:.2f}x' if same is not None else '—'} | "
            f"{f'{best:.2f}x' if best is not None else '—'} | {mem_txt} |"
        )
    return "\n".join(rows)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------


def main(argv=None) -> int:
    args = parse_args(argv)
    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    try:
        device = resolve_device(args.device)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    envs = args.envs or list(DEFAULT_ENVS_CUDA if device.type == "cuda" else DEFAULT_ENVS_CPU)
    procgen_envs = args.procgen_envs or [n for n in envs if n <= args.procgen_max]

    hw = hardware_info(device)
    hw["malloc"] = apply_malloc(args)
    hw["loadavg_start"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    _log(
        f"# {hw['cpu_model']} ({hw['cpu_count']} cores), torch {hw['torch_version']} "
        f"({threads} threads), device {device}" + (f" [{hw['gpu_name']}]" if hw["gpu_name"] else "")
    )
    if hw["loadavg_start"] and hw["loadavg_start"][0] > 0.5 * (hw["cpu_count"] or 1):
        _log(
            f"# warning: load average {hw['loadavg_start'][0]:.2f}; "
            "other processes may skew the results (with fewer free cores than "
            "--threads, torch's thread pool stalls: try --threads 1)"
        )

    notes: list[str] = []
    results: list[dict] = []
    t_start = time.perf_counter()

    def record(fn, *fn_args, label: str):
        try:
            r = fn(*fn_args)
        except Exception as e:  # out of memory, or a bug: report it and go on
            backend, obs, n = label.split("/")[:3]
            err = f"{type(e).__name__}: {e}"
            r = {"backend": backend, "obs": obs, "envs": int(n), "error": err}
            _log(f"  {label}: FAILED {r['error']}")
            if device.type == "cuda":
                torch.cuda.empty_cache()
        else:
            _log(
                f"  {label}: {r['steps_per_s']:,.0f} steps/s "
                f"({r['steps']} steps in {r['seconds']:.2f} s, {r['episodes_ended']} episodes "
                f"ended; setup {r['setup_s']:.2f} s)"
            )
        results.append(r)

    if not args.no_procgen:
        procgen, why = import_procgen()
        if procgen is None:
            notes.append(f"procgen skipped: {why}")
            _log(f"# {notes[-1]}")
        else:
            pthreads = args.procgen_threads or threads
            # A throwaway env first: loading the library and its assets is a one-off cost
            # that would otherwise land in the first configuration's setup time and RSS.
            try:
                procgen.ProcgenGym3Env(num=1, env_name=args.game, num_threads=1).observe()
            except Exception as e:
                procgen = None
                notes.append(f"procgen skipped: it failed to start ({type(e).__name__}: {e})")
                _log(f"# {notes[-1]}")
            gc.collect()
            for n in procgen_envs if procgen is not None else ():
                record(bench_procgen, procgen, n, args, pthreads, label=f"procgen/pixels/{n}")
    else:
        notes.append("procgen skipped (--no-procgen)")

    if not args.no_native:
        for compile in dict.fromkeys(args.compile):
            for obs_mode in args.obs:
                for n in envs:
                    label = f"native/{obs_mode}/{n}/compile={compile}"
                    record(bench_native, n, obs_mode, device, args, compile, label=label)

    best = add_ratios(results)
    hw["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    hw["total_runtime_s"] = time.perf_counter() - t_start

    table = markdown_table(results)
    print(table)
    if best:
        print(f"\nprocgen best: {best:,.0f} steps/s")
    print(
        "\nmemory/env: 'tensors' = env state + upcoming-level state + what the symbolic view "
        "keeps between steps + one observation (CPU; step temporaries excluded); "
        "'cuda peak' = max_memory_allocated delta / envs; "
        "'RSS' = resident-set growth over env creation and warm-up / envs (approximate)."
    )
    for note in notes:
        print(f"note: {note}")

    payload = {
        "benchmark": "throughput",
        "game": args.game,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "hardware": hw,
        "notes": notes,
        "procgen_best_steps_per_s": best,
        "results": results,
        "table_markdown": table,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"\nwrote {args.out} (total {hw['total_runtime_s']:.0f} s)")
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
