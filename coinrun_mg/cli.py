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
import platform
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import coinrun_mg

EPILOG = """\
examples:
  coinrun-mg info                 versions, torch build and devices, registered env ids
  python -m coinrun_mg info       the same, without the console script
  coinrun-mg info --help          help for one subcommand
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
        "env ids:     " + (", ".join(env_ids) if env_ids else "(none registered)"),
    ]
    print("\n".join(lines))
    return 0


# --- registry of subcommands ------------------------------------------------------------

COMMANDS: dict[str, Command] = {
    "info": Command(
        help="print versions, the torch build and devices, and the registered env ids",
        add_arguments=_add_info_arguments,
        run=_run_info,
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
    return COMMANDS[args.command].run(args)


if __name__ == "__main__":
    sys.exit(main())
