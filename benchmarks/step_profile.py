#!/usr/bin/env python
"""Where the native core's step time goes: physics, episode starts, observations.

For each env count, steps a ``CoinRunCore`` with random actions and times, separately,
``physics_step`` (on a copy of the state), the episode starts of the environments that
ended, the observation, and the whole ``core.step``.  With ``--kernels`` it also counts
the device kernels (CUDA) or aten ops (CPU) one ``core.step`` launches, with the torch
profiler, and lists the most expensive ones.  With ``--parts`` it also times the parts of
real steps in place (``in_step_ms``: median and mean over ``--repeats`` steps): the parts
timed alone above find their data still in cache from the call before, inside a step they
do not (on the CPU; CUDA is synchronized around each part, which stalls its queue).

    python benchmarks/step_profile.py --device cpu --envs 16384
    python benchmarks/step_profile.py --device cuda --envs 4096,65536 --kernels
    python benchmarks/step_profile.py --device cpu --envs 16384 --obs symbolic --compile on --parts
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import torch
from network_speed import median_ms  # benchmarks/ is on sys.path when run as a script
from throughput import add_malloc_argument, apply_malloc

from coinrun_mg.envs.checks import resolve_device
from coinrun_mg.envs.coinrun import observation as render
from coinrun_mg.envs.coinrun.config import CoinRunConfig
from coinrun_mg.envs.coinrun.core import CoinRunCore
from coinrun_mg.envs.coinrun.state import NUM_ACTIONS
from coinrun_mg.envs.compile import COMPILE_WORDS


def profile(num_envs: int, obs_mode: str, device: torch.device, args) -> dict:
    config = CoinRunConfig(obs_mode=obs_mode, distribution_mode=args.distribution_mode)
    compile = COMPILE_WORDS[args.compile]
    core = CoinRunCore(
        num_envs, config, device=device, check_actions=False, compile=compile, **args.core_kwargs
    )
    core.reset(seed=0)
    gen = torch.Generator(device).manual_seed(0)

    def actions():
        return torch.randint(0, NUM_ACTIONS, (num_envs,), device=device, generator=gen)

    for _ in range(args.warmup):  # fills the bank of upcoming levels
        core.step(actions())
    state = copy.copy(core.state)
    a = actions()
    physics = core._physics
    physics_ms = median_ms(lambda: physics(copy.copy(state), a, config), args.repeats, device)
    observe_ms = median_ms(core.observe, args.repeats, device)

    ended = []

    def start_ended():
        events = physics(core.state, actions(), config)
        done = events.terminated | events.truncated
        ended.append(int(done.sum()))
        core.start_next_episodes(done)

    physics_and_starts_ms = median_ms(start_ended, args.repeats, device)
    step_ms = median_ms(lambda: core.step(actions()), args.repeats, device)
    row = {
        "num_envs": num_envs,
        "obs_mode": obs_mode,
        "compiled": core.compiled,
        "physics_ms": round(physics_ms, 3),
        "episode_starts_ms": round(physics_and_starts_ms - physics_ms, 3),
        "ended_per_step": sum(ended) / len(ended),
        "observe_ms": round(observe_ms, 3),
        "step_ms": round(step_ms, 3),
        "steps_per_s": round(num_envs / step_ms * 1e3),
    }
    if args.parts:
        row["in_step_ms"] = time_parts(core, actions, args.repeats, device)
    if args.kernels:
        activities = [torch.profiler.ProfilerActivity.CPU]
        if device.type == "cuda":
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        with torch.profiler.profile(activities=activities) as prof:
            for _ in range(5):
                core.step(actions())
            if device.type == "cuda":
                torch.cuda.synchronize(device)
        events = prof.events()
        if device.type == "cuda":
            kernels = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA]
        else:
            kernels = [e for e in events if e.name.startswith("aten::") and e.cpu_parent is None]
        row["kernels_per_step"] = len(kernels) / 5
        sort_by = "cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
        row["top_ops"] = prof.key_averages().table(sort_by=sort_by, row_limit=args.top)
    return row


# What --parts times inside a step: the core's stages and, of the symbolic view, its parts.
_CORE_PARTS = ("_physics", "_start_next_episode", "_fill_bank", "observe")
_RENDER_PARTS = ("_crop_padded", "_cell_bytes_in_pairs", "_put_constants", "_alive_enemies")


@contextmanager
def _timed(owner, names, times, device):
    """Wrap ``owner``'s callables ``names`` so each call appends its milliseconds to
    ``times[name]``; restores the originals on exit."""
    saved = {name: getattr(owner, name) for name in names if hasattr(owner, name)}
    # Instance attributes (the core's compiled physics) go back; methods were shadowed.
    own = {name for name in saved if name in vars(owner)}

    def wrap(name, fn):
        def timed(*a, **k):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            out = fn(*a, **k)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times[name].append((time.perf_counter() - start) * 1000)
            return out

        return timed

    try:
        for name, fn in saved.items():
            setattr(owner, name, wrap(name, fn))
        yield
    finally:
        for name, fn in saved.items():
            if name in own:
                setattr(owner, name, fn)
            else:
                delattr(owner, name)


def time_parts(core, actions, repeats: int, device) -> dict:
    """Median and mean milliseconds of each part over ``repeats`` real steps ({} per part;
    a part that did not run, such as ``_fill_bank`` in a short window, is left out)."""
    times = defaultdict(list)
    # On CUDA the observation is one compiled graph: wrapping its parts would break it up.
    render_parts = _RENDER_PARTS if device.type == "cpu" else ()
    with _timed(core, _CORE_PARTS, times, device), _timed(render, render_parts, times, device):
        for _ in range(repeats):
            batch = actions()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            core.step(batch)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times["step"].append((time.perf_counter() - start) * 1000)
    return {
        name: {"median": round(statistics.median(v), 3), "mean": round(statistics.mean(v), 3)}
        for name, v in times.items()
    }


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--envs", default="4096,16384")
    p.add_argument("--obs", default="symbolic,pixels")
    p.add_argument("--distribution-mode", default="hard", choices=("easy", "hard"))
    p.add_argument("--warmup", type=int, default=40)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--kernels", action="store_true", help="count kernels with the profiler")
    p.add_argument("--parts", action="store_true", help="time the parts inside real steps")
    p.add_argument("--top", type=int, default=25, help="rows of the profiler table")
    p.add_argument("--core", default="{}", help="extra CoinRunCore kwargs as JSON")
    p.add_argument(
        "--compile", default="auto", choices=tuple(COMPILE_WORDS), help="CoinRunCore(compile=)"
    )
    p.add_argument("--out", type=Path, default=None, help="JSON results file")
    add_malloc_argument(p)
    args = p.parse_args(argv)
    args.core_kwargs = json.loads(args.core)
    malloc = apply_malloc(args)
    device = resolve_device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(torch.get_num_threads())
    t0 = time.perf_counter()
    rows = []
    for obs_mode in args.obs.split(","):
        for n in (int(v) for v in args.envs.split(",")):
            row = profile(n, obs_mode, device, args)
            row["elapsed_s"] = round(time.perf_counter() - t0, 1)
            rows.append(row)
            table = row.pop("top_ops", None)
            print(json.dumps(row), flush=True)
            if table:
                print(table, flush=True)
                row["top_ops"] = table
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        payload = {"device": str(device), "malloc": malloc, "rows": rows}
        args.out.write_text(json.dumps(payload, indent=1))


if __name__ == "__main__":
    main()
