"""Checkpoint files: written atomically, read back verified.

A checkpoint is a plain ``torch.save`` dict, so ``torch.load(path, weights_only=True)``
still opens it with no coinrun-mg code at all::

    {"format": "coinrun-mg-ppo", "version": 2, "digest": "<sha256 hex>", "config": ...,
     "model": ..., ...}

``digest`` is a SHA-256 over a canonical walk of every other entry (dict keys sorted;
tensors by dtype, shape and raw bytes; numbers, strings, bytes, lists, None), computed
before saving and recomputed after every load.  Why a digest of the content rather than
of the file: torch's zip reader does not check the archive's CRCs, so flipped bytes in
tensor data (weights, the saved level grids) load without complaint; a digest over the
loaded values catches that, and catches it whatever torch's file layout is, while the
file stays a standard torch file that other tools read.

:func:`read_checkpoint` turns every way a file can be wrong into one
:class:`CheckpointError` (a ``ValueError``) whose message is one line naming the file:
empty, truncated or damaged, not a coinrun-mg checkpoint, digest mismatch, a newer
version, or Python objects refused by the ``weights_only`` loader.  Version-1 files
(written before digests) load with a :class:`CheckpointWarning` that they cannot be
verified.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
import struct
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from coinrun_mg.files import atomic_write_bytes

from .config import PPOConfig

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_NAME",
    "CHECKPOINT_VERSION",
    "CheckpointError",
    "CheckpointWarning",
    "CheckpointWriteError",
    "payload_digest",
    "read_checkpoint",
    "read_run_config",
    "write_checkpoint",
]

#: The checkpoint file in a run directory.
CHECKPOINT_NAME = "checkpoint.pt"
#: The ``format`` entry of every coinrun-mg PPO checkpoint.
CHECKPOINT_FORMAT = "coinrun-mg-ppo"
#: The version written; files up to it are read.  2: with ``digest``.  1: without.
CHECKPOINT_VERSION = 2

# Entries that the trainer and load_policy() cannot do without.
_REQUIRED = ("config", "env_spec", "model")
# torch.save writes zip archives; anything else is not one of ours.
_ZIP_MAGIC = b"PK\x03\x04"
# The weights_only loader's words for a global (a Python object) it will not build.
_UNSAFE = re.compile(r"GLOBAL|allowlist|add_safe_globals|must be imported to load")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; the message is one line naming the file."""


class CheckpointWriteError(OSError):
    """A checkpoint that could not be written (a full disk, no permission); the file it
    would have replaced is untouched.  ``errno`` is the system's; the message is one line."""

    def __str__(self) -> str:
        return str(self.strerror)


class CheckpointWarning(UserWarning):
    """A checkpoint that loads but cannot be verified (written before digests)."""


# ======================================================================================
# Digest
# ======================================================================================


def payload_digest(payload: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of a checkpoint's entries, ``digest`` itself left out.

    Raises ``TypeError`` on a value a checkpoint does not hold (see the module docstring
    for what it may hold).
    """
    hasher = hashlib.sha256()
    body = {k: v for k, v in payload.items() if k != "digest"}
    for chunk in _chunks(body):
        hasher.update(chunk)
    return hasher.hexdigest()


def _chunks(value: Any) -> Iterator[bytes | memoryview]:
    """The canonical encoding of ``value``: a type tag, then lengths and contents."""
    if value is None:
        yield b"N"
    elif isinstance(value, bool):  # before int: bool is an int
        yield b"B1" if value else b"B0"
    elif isinstance(value, int):
        yield from _sized(b"I", str(value).encode())
    elif isinstance(value, float):
        yield b"F" + struct.pack("<d", value)
    elif isinstance(value, str):
        yield from _sized(b"S", value.encode("utf-8", "surrogatepass"))
    elif isinstance(value, (bytes, bytearray)):
        yield from _sized(b"Y", bytes(value))
    elif isinstance(value, (torch.dtype, torch.device)):
        yield from _sized(b"D", str(value).encode())
    elif isinstance(value, torch.Tensor):
        yield from _tensor_chunks(value)
    elif isinstance(value, (list, tuple)):  # torch.Size is a tuple
        yield b"L" + struct.pack("<Q", len(value))
        for item in value:
            yield from _chunks(item)
    elif isinstance(value, Mapping):
        # Sorted by the keys' encodings: an order that does not depend on how the dict
        # was built, and that works for keys of mixed types (optimizer states have ints).
        items = sorted(((b"".join(_chunks(k)), v) for k, v in value.items()), key=_first)
        yield b"M" + struct.pack("<Q", len(items))
        for key, item in items:
            yield key
            yield from _chunks(item)
    else:
        raise TypeError(f"a checkpoint cannot hold a {type(value).__name__}")


def _first(pair: tuple[bytes, Any]) -> bytes:
    return pair[0]


def _sized(tag: bytes, data: bytes) -> Iterator[bytes]:
    yield tag + struct.pack("<Q", len(data))
    yield data


def _tensor_chunks(tensor: torch.Tensor) -> Iterator[bytes | memoryview]:
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    head = f"{flat.dtype}|{tuple(tensor.shape)}".encode()
    yield from _sized(b"T", head)
    raw = flat.view(torch.uint8).numpy()  # the bytes, whatever the dtype (bfloat16 too)
    yield struct.pack("<Q", raw.nbytes)
    yield memoryview(raw)


# ======================================================================================
# Writing and reading
# ======================================================================================


def write_checkpoint(payload: Mapping[str, Any], path: str | os.PathLike) -> None:
    """Write ``payload`` (the trainer's entries) to ``path`` atomically, adding the
    ``format``, ``version`` and ``digest`` entries."""
    data = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **payload}
    data["digest"] = payload_digest(data)
    # Serialized in memory first: torch's zip writer reports a failed file write as a
    # RuntimeError, the plain write below as the OSError it is (ENOSPC, EACCES, ...).
    buffer = io.BytesIO()
    torch.save(data, buffer)
    try:
        atomic_write_bytes(path, buffer.getbuffer())
    except OSError as exc:
        raise CheckpointWriteError(
            exc.errno,
            f"could not write the checkpoint {path}: {exc.strerror or exc}; the one before "
            "it, if any, is kept",
        ) from None


def read_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict:
    """The entries of a checkpoint file (or of a run directory's checkpoint), verified.

    Loaded with ``torch.load(weights_only=True)`` onto the CPU, checked (format, version,
    digest), then moved to ``device``.  Raises ``FileNotFoundError`` when there is no
    file and :class:`CheckpointError` when the file cannot be used.
    """
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    data = _load(path)
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a coinrun-mg PPO checkpoint")
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(f"{path} is damaged: its version entry is {version!r}")
    if version > CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint version {version}; this coinrun-mg reads versions up to "
            f"{CHECKPOINT_VERSION} (upgrade coinrun-mg)"
        )
    if version == 1:
        warnings.warn(
            f"{path} is a version-1 checkpoint (no digest): it cannot be verified",
            CheckpointWarning,
            stacklevel=2,
        )
    else:
        _verify(path, data)
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise CheckpointError(f"{path} is damaged: it has no {', '.join(missing)} entry")
    device = torch.device(device)
    return data if device.type == "cpu" else _to_device(data, device)


def read_run_config(run_dir: str | os.PathLike) -> PPOConfig | None:
    """The config of the run in ``run_dir`` (from its verified checkpoint), or None if it
    has no checkpoint."""
    path = Path(run_dir) / CHECKPOINT_NAME
    if not path.exists():
        return None
    return PPOConfig.from_dict(read_checkpoint(path)["config"])


def _load(path: Path) -> Any:
    """``torch.load(weights_only=True)``, with every failure turned into a CheckpointError."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(_ZIP_MAGIC))
    except OSError as exc:
        raise CheckpointError(f"{path} cannot be read: {exc.strerror or exc}") from None
    if not head:
        raise CheckpointError(f"{path} is empty (0 bytes): not a checkpoint")
    if head != _ZIP_MAGIC:
        # Not a torch zip archive (a text file, a bare pickle, an old torch format): not
        # ours, and not handed to the unpickler at all.
        raise CheckpointError(f"{path} is not a coinrun-mg PPO checkpoint (not a torch file)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if _UNSAFE.search(str(exc)):
            raise CheckpointError(
                f"{path} contains Python objects that a checkpoint never holds; refused "
                "(it may be unsafe)"
            ) from None
        raise CheckpointError(f"{path} is damaged (its contents cannot be decoded)") from None
    except OSError as exc:  # the file opened above, so mostly a cut archive
        raise CheckpointError(
            f"{path} cannot be read ({exc.strerror or exc}): truncated or damaged"
        ) from None
    except Exception:  # miniz, EOF, key and decoding errors: a cut or corrupted archive
        raise CheckpointError(
            f"{path} is truncated or damaged (not a readable torch file)"
        ) from None


def _verify(path: Path, data: dict) -> None:
    stored = data.get("digest")
    if not isinstance(stored, str):
        raise CheckpointError(f"{path} is damaged: it has no digest entry")
    try:
        actual = payload_digest(data)
    except TypeError as exc:
        raise CheckpointError(f"{path} is damaged: {exc}") from None
    if actual != stored:
        raise CheckpointError(
            f"{path} is damaged: its contents do not match the digest written with them"
        )


def _to_device(value: Any, device: torch.device) -> Any:
    """``value`` with every tensor moved to ``device`` (as ``map_location`` would)."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return type(value)((k, _to_device(v, device)) for k, v in value.items())
    if isinstance(value, list):
        return [_to_device(v, device) for v in value]
    if isinstance(value, tuple):
        return tuple(_to_device(v, device) for v in value)
    return value
