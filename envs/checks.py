"""Argument checks shared by every game of the family.

Each check raises ``ValueError`` naming the parameter, the value and what is accepted,
so the configs, cores and facades of all games word their errors alike.
"""

from __future__ import annotations

import numbers

import torch

# The observation modes and procgen distribution modes every game of the family accepts.
OBS_MODES = ("symbolic", "pixels")
DISTRIBUTION_MODES = ("easy", "hard")


def one_of(name: str, value, accepted: tuple) -> None:
    """Refuse ``value`` unless it is one of ``accepted``."""
    if value not in accepted:
        raise ValueError(f"{name}={value!r} is invalid; accepted values are {accepted}")


def int_at_least(name: str, value, minimum: int) -> int:
    """``value`` as a Python int, refusing anything but an integer (a numpy one too, not a
    bool) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name}={value!r} is invalid; it must be an int >= {minimum}")
    return int(value)


def ints_at_least(config, **minimums: int) -> None:
    """Check the named int fields of a frozen config against their minimums and store
    them as Python ints (so that numpy ints, e.g. from a sweep grid, serialize)."""
    for name, minimum in minimums.items():
        object.__setattr__(config, name, int_at_least(name, getattr(config, name), minimum))


def true_or_false(name: str, value) -> None:
    """Refuse anything but True or False."""
    if not isinstance(value, bool):
        raise ValueError(f"{name}={value!r} is invalid; use True or False")


def unit_fraction(name: str, value, example: str) -> float:
    """``value`` as a Python float, refusing anything but a real number (a numpy one too,
    not a bool) in [0, 1]; the error ends with ``example`` (what a value means for the
    game)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name}={value!r} is invalid; it must be a float in [0, 1] ({example})")
    return float(value)


def level_seeds_below_2_31(start_level: int, num_levels: int) -> None:
    """Refuse a level range ``[start_level, start_level + num_levels)`` (0 levels:
    unlimited) that reaches 2**31: level seeds are procgen's 31-bit ints."""
    if num_levels and start_level + num_levels > 2**31:
        raise ValueError(
            f"start_level + num_levels = {start_level + num_levels} is invalid; "
            "level seeds must stay below 2**31"
        )


def resolve_device(device: str | torch.device) -> torch.device:
    """Map ``"auto"`` to CUDA when available, else the CPU; refuse unusable devices."""
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise ValueError(f"device={device!r} is invalid; use 'auto', 'cpu', 'cuda' or 'cuda:N'")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ValueError(
            f"device={device!r} is invalid; use 'auto', 'cpu', 'cuda' or 'cuda:N'"
        ) from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} is unavailable: this torch build sees no CUDA GPU "
                f"(torch {torch.__version__}); use device='cpu' or 'auto'"
            )
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(
                f"device={device!r} is unavailable: only {torch.cuda.device_count()} "
                "CUDA device(s) are visible"
            )
    elif resolved.type != "cpu":
        raise ValueError(f"device={device!r} is not supported; use 'auto', 'cpu' or 'cuda'")
    return resolved


# What a core does when an episode ends (see each game's core).
AUTORESET_MODES = ("same_step", "next_step", "disabled")
