"""How much memory a batch of environments needs, and refusing one that cannot fit.

A ``num_envs`` typed with a few zeros too many otherwise allocates until the system
kills the process.  :func:`check_num_envs` compares a rough estimate -- the per-env
state (the current level and the two-deep bank of upcoming ones), one observation
batch and, for training, the rollout storage -- with the memory the device has free,
and raises ``ValueError`` naming both before anything is allocated.  The estimate is a
lower bound of the real use (temporaries of a step are not counted), so anything it
refuses would certainly not fit.
"""

from __future__ import annotations

import math
import os

import torch

from .state import GRID_H, GRID_W, MAX_ENEMIES

# One level: the uint8 tile grid, three int64 bit masks per column, float32/bool enemy
# slots (lo, hi, x, y, vx, alive) and a few dozen scalars.
_LEVEL_BYTES = GRID_W * GRID_H + 3 * GRID_W * 8 + MAX_ENEMIES * (5 * 4 + 1) + 256
_LEVELS_PER_ENV = 3  # the current level and the bank's two upcoming ones
# Per step of rollout storage besides the observation: int64 action, float32 log-prob,
# reward, done, value, valid mask, advantage and return.
_ROLLOUT_SCALAR_BYTES = 8 + 7 * 4


def observation_bytes(obs_mode: str, view_size: int = 13) -> int:
    """Bytes of one uint8 observation: 64 x 64 RGB pixels or the symbolic view."""
    if obs_mode == "symbolic":
        from .observation import SYMBOLIC_CHANNELS

        return view_size * view_size * SYMBOLIC_CHANNELS
    return 64 * 64 * 3


def bytes_per_env(obs_bytes: int, num_steps: int = 0) -> int:
    """Estimated bytes one environment needs: its levels, its observation and, when
    training with rollouts of ``num_steps`` steps, its share of the rollout storage."""
    env = _LEVELS_PER_ENV * _LEVEL_BYTES + obs_bytes
    return env + num_steps * (obs_bytes + _ROLLOUT_SCALAR_BYTES)


def available_bytes(device: torch.device) -> int | None:
    """Memory free for a new allocation on ``device``, or None when it cannot be told."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        # Blocks torch's caching allocator holds but no tensor uses (an earlier run in
        # this process, e.g. a sweep's) are free for this one too.
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(free + cached)
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # the file counts kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_num_envs(
    num_envs: int,
    obs_bytes: int,
    device: torch.device,
    num_steps: int = 0,
    available: int | None = None,
) -> None:
    """Raise ``ValueError`` when ``num_envs`` environments (with ``num_steps`` steps of
    rollout storage each) would need more memory than ``device`` has free.

    ``available`` overrides the measured free memory (for tests)."""
    per_env = bytes_per_env(obs_bytes, num_steps)
    needed = num_envs * per_env
    if available is None:
        available = available_bytes(device)
    if available is None or needed <= available:
        return
    at_most = max(1, available // per_env)
    what = f" and {num_steps} rollout steps" if num_steps else ""
    raise ValueError(
        f"num_envs={num_envs} needs at least {format_bytes(needed)} "
        f"({format_bytes(per_env)} per env: levels, observation{what}) but {device} has "
        f"{format_bytes(available)} available; use num_envs of at most about {at_most}"
    )


def format_bytes(n: float) -> str:
    """``n`` bytes in binary units with three significant digits (e.g. ``1.5 GiB``)."""
    if n < 1024:
        return f"{int(n)} B"
    exponent = min(int(math.log(n, 1024)), 5)
    return f"{n / 1024**exponent:.3g} {'BKMGTP'[exponent]}iB"
