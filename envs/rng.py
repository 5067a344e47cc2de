"""Counter-based random numbers: the same draws on every device and batch layout.

A level is a pure function of its seed.  Instead of a sequential generator (whose state
would depend on which environments happened to reset together), every random choice is
``hash(key, stream)``: ``key`` is the level seed (or an environment's seed key) and
``stream`` numbers the choice.  The hash uses only 64-bit integer arithmetic masked to
32 bits, which torch computes identically on the CPU and on CUDA.
"""

from __future__ import annotations

import torch

MASK32 = 0xFFFFFFFF
_GOLDEN = 0x9E3779B9


def hash32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer mixing function (xorshift-multiply rounds) on int64 tensors.

    Values are kept below 2**32 after each multiply, so the int64 products never
    overflow in a way that changes the low 32 bits we keep.
    """
    x = x & MASK32
    x = ((x ^ (x >> 16)) * 0x7FEB352D) & MASK32
    x = ((x ^ (x >> 15)) * 0x846CA68B) & MASK32
    return x ^ (x >> 16)


def random_bits(key: torch.Tensor, stream: int | torch.Tensor) -> torch.Tensor:
    """Uniform 32-bit integers (as int64) for each ``key``, independent across streams."""
    folded = hash32(key) ^ hash32((key >> 32) + 0x632BE5AB)
    return hash32(folded + ((torch.as_tensor(stream, device=key.device) * _GOLDEN) & MASK32))


def random_int(key: torch.Tensor, stream: int, n: torch.Tensor | int) -> torch.Tensor:
    """Uniform integers in ``[0, n)`` (``n >= 1``, per element or scalar)."""
    return (random_bits(key, stream) * n) >> 32


def probability_threshold(p: float) -> int:
    """The 32-bit threshold ``t`` such that ``random_bits < t`` has probability ``p``.

    Computed on the host from the float, so a fraction such as 0.001 is exact to 2**-32
    and the comparison itself is integer-only (device independent).
    """
    return min(int(round(p * 2**32)), 2**32)


_LEVEL_SEED_SALT = 0x5EED5EED


def level_seeds_for(env_key: torch.Tensor, episode: torch.Tensor, config) -> torch.Tensor:
    """The level seed of each environment's ``episode``-th episode (procgen's seed range).

    A pure function of the environment's key and episode number, so an environment's
    sequence of levels does not depend on what the other environments do.  ``config`` is
    any game's config: only its ``num_levels`` and ``start_level`` are read, so every game
    of the family plays the same level seeds for the same keys.
    """
    bits = random_bits(env_key ^ _LEVEL_SEED_SALT, episode)
    if config.num_levels == 0:
        return bits & 0x7FFFFFFF
    return config.start_level + ((bits * config.num_levels) >> 32)
