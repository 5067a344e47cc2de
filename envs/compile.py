"""Running a game's step through ``torch.compile``, with an eager fallback.

Every core of the family takes ``compile="auto" | True | False``; this module turns that
into a decision (:func:`resolve_compile`) and wraps the functions it compiles
(:class:`CompiledOrEager`).  Why each option is set: docs/design-notes-envs.md,
"Compilation".
"""

from __future__ import annotations

import warnings
from functools import cache

import torch

# CPU graphs: no cap on fused kernel size, and no bounds checks on gathered indices (the
# physics clamps every index onto the grid first; eager code still raises).
_CPU_COMPILE_OPTIONS = {"max_fusion_size": 4096, "assert_indirect_indexing": False}

# Graphs whose sizes are symbolic (the CPU walk of the alive enemies): scalar code, since
# inductor's vector code for them failed to build.
_CPU_DYNAMIC_OPTIONS = {"assert_indirect_indexing": False, "cpp.simdlen": 1}

COMPILE_CHOICES = ("auto", True, False)
# The same choices as command-line words (``--compile-env``, the benchmarks' ``--compile``).
COMPILE_WORDS = {"auto": "auto", "on": True, "off": False}


def resolve_compile(compile: bool | str, device: torch.device) -> bool:
    """``"auto"`` compiles on CUDA only; ``True`` / ``False`` force it on or off."""
    if compile == "auto" and not isinstance(compile, bool):
        return device.type == "cuda"
    if isinstance(compile, bool):
        return compile
    raise ValueError(f"compile={compile!r} is invalid; accepted values are {COMPILE_CHOICES}")


@cache
def _compiled(fn, device_type: str, dynamic: bool = False):
    """One ``torch.compile`` wrapper per function and device type, shared by every core
    in the process.

    Static shapes: each batch size compiles once (torch keeps a few per function and
    process, then runs the function eagerly); kernels with a symbolic batch size were
    much slower.  ``dynamic`` is for graphs whose sizes change with every new level.
    """
    if dynamic:
        return torch.compile(fn, dynamic=True, options=_CPU_DYNAMIC_OPTIONS)
    options = _CPU_COMPILE_OPTIONS if device_type == "cpu" else None
    return torch.compile(fn, dynamic=False, options=options)


class CompiledOrEager:
    """``fn`` through ``torch.compile``, or eagerly if compiling it fails.

    Compiling needs a C++ compiler on the CPU and Triton on a GPU; without them the first
    call fails.  The env then warns once and carries on eagerly (same results, slower)
    instead of failing a user who asked for nothing but the default.  Only a failure
    before the first successful call falls back: compile errors happen there (one core,
    one batch size), and a later error is a real one.
    """

    def __init__(self, fn, device: torch.device, dynamic: bool = False):
        self.fn = fn
        self.compiled = _compiled(fn, device.type, dynamic)
        self.working = None  # unknown until the first call

    def __call__(self, *args, **kwargs):
        if self.working is False:
            return self.fn(*args, **kwargs)
        if self.working:
            return self.compiled(*args, **kwargs)
        try:
            out = self.compiled(*args, **kwargs)
        except Exception as error:  # noqa: BLE001 - any compiler failure; eager re-raises real errors
            self.working = False
            warnings.warn(
                f"torch.compile of {self.fn.__name__} failed ({type(error).__name__}: "
                f"{str(error).splitlines()[0] if str(error) else ''}); running it eagerly. "
                "Pass compile=False to skip compiling.",
                RuntimeWarning,
                stacklevel=3,
            )
            return self.fn(*args, **kwargs)
        self.working = True
        return out
