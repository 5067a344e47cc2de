#!/usr/bin/env python
"""Forward and forward+backward time of the policy networks on their observations.

For each network (``impala`` on 64x64x3 pixels; ``compact``, ``grid`` and ``mlp`` on the
13x13 symbolic view) it times, on ``--device``:

* ``act``: a no-grad forward pass over ``--act-batch`` observations (one rollout step of
  that many envs);
* ``update``: forward + backward + Adam step over a ``--update-batch`` minibatch with a
  PPO-shaped loss (log-softmax of the logits plus the value).

``--obs-shape H,W,C`` times every network on that observation shape instead (Maze's quick
profile sees ``29,29,3``); ``--scale`` multiplies the IMPALA and grid CNNs' channels;
``--compile`` times the network under ``torch.compile`` (forward and backward; the first
calls compile, and only the timed calls after them count).  Each figure is the median of
``--repeats`` timed calls after two warm-up calls.  Writes
``benchmarks/out/network_speed.json`` and prints a table.

    python benchmarks/network_speed.py
    python benchmarks/network_speed.py --device cuda --update-batch 8192
    python benchmarks/network_speed.py --networks grid --obs-shape 29,29,3 --update-batch 2048
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from coinrun_mg.agents.networks import NETWORKS, Agent
from coinrun_mg.envs.checks import resolve_device
from coinrun_mg.envs.coinrun.observation import SYMBOLIC_CHANNELS

OUT = Path(__file__).resolve().parent / "out" / "network_speed.json"
OBS_SHAPES = {"impala": (64, 64, 3), "compact": (13, 13, SYMBOLIC_CHANNELS)}
OBS_SHAPES["mlp"] = OBS_SHAPES["grid"] = OBS_SHAPES["compact"]


def median_ms(fn, repeats: int, device: torch.device) -> float:
    """Median milliseconds of ``repeats`` calls of ``fn`` after two warm-up calls."""
    times = []
    for i in range(repeats + 2):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= 2:  # the first two calls warm up allocators and kernels
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def measure(
    network: str,
    act_batch: int,
    update_batch: int,
    repeats: int,
    device,
    shape: tuple[int, int, int] | None = None,
    scale: int = 1,
    compile_: bool = False,
) -> dict:
    shape = shape or OBS_SHAPES[network]
    agent = Agent(shape, 15, network, scale).to(device)
    optimizer = torch.optim.Adam(agent.parameters(), lr=1e-4)
    model = torch.compile(agent) if compile_ else agent
    generator = torch.Generator(device).manual_seed(0)
    obs = torch.randint(0, 256, (update_batch, *shape), generator=generator, device=device)
    obs = obs.to(torch.uint8)

    def act():
        with torch.no_grad():
            model(obs[:act_batch])

    def update():
        logits, value = model(obs)
        loss = torch.log_softmax(logits, -1)[:, 0].mean() + value.square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    act_ms = median_ms(act, repeats, device)
    update_ms = median_ms(update, repeats, device)
    return {
        "network": network,
        "obs_shape": list(shape),
        "scale": scale,
        "compiled": compile_,
        "parameters": sum(p.numel() for p in agent.parameters()),
        "act_ms": round(act_ms, 2),
        "update_ms": round(update_ms, 2),
        "update_us_per_obs": round(update_ms * 1000 / update_batch, 2),
    }


def main(argv=None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--networks", default=",".join(NETWORKS), help="comma-separated")
    p.add_argument("--act-batch", type=int, default=512)
    p.add_argument("--update-batch", type=int, default=4096)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--device", default="cpu")
    p.add_argument("--torch-threads", type=int, default=0)
    p.add_argument("--obs-shape", default="", help="H,W,C for every network (default: its own)")
    p.add_argument("--scale", type=int, default=1, help="channel multiplier (impala, grid)")
    p.add_argument("--compile", action="store_true", help="time the networks compiled")
    args = p.parse_args(argv)
    shape = None
    if args.obs_shape:
        parts = args.obs_shape.split(",")
        if len(parts) != 3 or not all(part.strip().isdigit() for part in parts):
            p.error(f"--obs-shape {args.obs_shape!r} is invalid; give three integers H,W,C")
        shape = tuple(int(part) for part in parts)
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    device = resolve_device(args.device)
    rows = [
        measure(
            n,
            args.act_batch,
            args.update_batch,
            args.repeats,
            device,
            shape=shape,
            scale=args.scale,
            compile_=args.compile,
        )
        for n in args.networks.split(",")
    ]
    print(f"{'network':8} {'params':>9} {'act ms':>8} {'update ms':>10} {'us/obs':>7}")
    for r in rows:
        print(
            f"{r['network']:8} {r['parameters']:9d} {r['act_ms']:8.2f} {r['update_ms']:10.2f} "
            f"{r['update_us_per_obs']:7.2f}"
        )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    machine = {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average": os.getloadavg(),
        "torch": torch.__version__,
        "device": str(device),
        "processor": platform.processor() or platform.machine(),
    }
    OUT.write_text(json.dumps({"args": vars(args), "machine": machine, "rows": rows}, indent=2))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
