"""Keeping large CPU buffers inside the process between steps (glibc only).

Each step of a CPU core allocates a fresh observation batch, and torch's CPU allocator
takes it from the C library's ``malloc``.  glibc serves blocks above its *mmap
threshold* -- adjusted as the program runs, but never above 32 MiB on 64-bit systems
(``mallopt(3)``) -- with a fresh ``mmap`` and gives them back with ``munmap`` when freed,
so a step whose observations exceed 32 MiB page-faults and zero-fills every page of them
anew.  :func:`tune_malloc` raises the threshold, and the heap's trim threshold with it,
so freed blocks stay in the heap and the next step reuses them (why this matters and how
the thresholds were chosen: docs/design-notes-envs.md, "Large CPU blocks").

This changes how the whole process allocates (freed memory up to the trim threshold is
kept rather than returned to the system), so the library never does it on its own: the
``coinrun-mg`` command and the benchmarks call it, and a core whose CPU observations
exceed the limit warns once (:func:`warn_if_mapped_afresh`) while it has not been called.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import platform
import warnings

# glibc's mallopt parameter numbers (malloc.h) and the 64-bit cap on its own dynamic
# mmap threshold, above which every block is mapped afresh.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
GLIBC_DYNAMIC_MMAP_MAX = 32 * 1024 * 1024
_INT_MAX = 2**31 - 1

_tuned_to: int | None = None  # the max_block_bytes of the last successful call


def tune_malloc(max_block_bytes: int = 256 * 2**20) -> bool:
    """Let glibc's ``malloc`` serve blocks up to ``max_block_bytes`` from its heap and
    keep up to twice that freed at the heap's top instead of returning it to the system.

    The default, 256 MiB, covers a step of pixels at 16,384 envs and keeps up to 512 MiB
    of freed memory in the process.  Returns True when applied, False where the C library
    is not glibc (macOS, Windows, musl): nothing changes there.  Calling it again is
    harmless.  The process's resident memory grows by up to the kept amount.
    """
    if isinstance(max_block_bytes, bool) or not isinstance(max_block_bytes, int):
        raise TypeError(f"max_block_bytes must be an int, got {max_block_bytes!r}")
    if not 1 << 20 <= max_block_bytes <= _INT_MAX:
        raise ValueError(
            f"max_block_bytes={max_block_bytes} is invalid; accepted values are 1 MiB "
            f"({1 << 20}) to {_INT_MAX} bytes"
        )
    global _tuned_to
    mallopt = _glibc_mallopt()
    if mallopt is None:
        return False
    trim = min(2 * max_block_bytes, _INT_MAX)
    if mallopt(_M_MMAP_THRESHOLD, max_block_bytes) != 1 or mallopt(_M_TRIM_THRESHOLD, trim) != 1:
        return False
    _tuned_to = max_block_bytes
    return True


def maps_afresh(num_bytes: int) -> bool:
    """Whether a freed block of ``num_bytes`` goes back to the system under the current
    settings, so that allocating it again page-faults: glibc's default above 32 MiB,
    after :func:`tune_malloc` above its ``max_block_bytes``; never off glibc (False)."""
    if _tuned_to is not None:
        return num_bytes > _tuned_to
    return _glibc_mallopt() is not None and num_bytes > GLIBC_DYNAMIC_MMAP_MAX


def remedy(num_bytes: int) -> str:
    """What a user can do about blocks of ``num_bytes`` being mapped afresh: call
    :func:`tune_malloc` while it has not been called, else raise its limit (or use
    fewer envs when no limit glibc accepts covers them)."""
    if _tuned_to is None:
        return (
            "call coinrun_mg.envs.malloc.tune_malloc() first to keep them in the process "
            "(the coinrun-mg command does)"
        )
    if num_bytes > _INT_MAX:
        return (
            f"that is more than tune_malloc() can keep (at most {_INT_MAX >> 20} MiB "
            "blocks); use fewer envs per process"
        )
    return (
        f"tune_malloc() was called with a limit of {_tuned_to >> 20} MiB; call "
        f"tune_malloc({num_bytes}) or more to keep them in the process, or use fewer envs"
    )


_warned_about_malloc = False


def warn_if_mapped_afresh(obs_bytes: int) -> None:
    """Warn once per process when each step's CPU observations are big enough for glibc
    to map and zero-fill them anew every step."""
    global _warned_about_malloc
    if _warned_about_malloc or not maps_afresh(obs_bytes):
        return
    _warned_about_malloc = True
    warnings.warn(
        f"each step's observations take {obs_bytes / 2**20:.1f} MiB, which glibc's malloc "
        f"maps and zero-fills afresh every step; {remedy(obs_bytes)}",
        RuntimeWarning,
        stacklevel=3,
    )


def describe() -> str:
    """One line on the process's malloc for ``coinrun-mg info``."""
    if _glibc_mallopt() is None:
        return "not glibc: large CPU observation blocks are left to the C library"
    if _tuned_to is None:
        limit = GLIBC_DYNAMIC_MMAP_MAX >> 20
        return f"glibc defaults: blocks over {limit} MiB are mapped afresh at each allocation"
    return f"glibc, tune_malloc(): blocks up to {_tuned_to >> 20} MiB are kept in the process"


@functools.cache
def _glibc_mallopt():
    """glibc's ``mallopt``, or None when the process does not run on glibc (looked up
    once: every CPU core asks, through :func:`maps_afresh`)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return mallopt
