"""The ``sac`` command line: a thin layer over the Python API.

Exit codes: 0 success; 1 a failure; 2 bad input file or array; 3 weights missing or invalid;
4 invalid option or configuration; 130 interrupted (Ctrl-C); 143 terminated (SIGTERM). Both
leave no half-written outputs: the input in progress loses whatever it had written.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sac import __version__
from sac.cli import backbones, demo, evaluate, merge_slide, refine, segment, train, tune
from sac.cli.common import EPILOG, Parser
from sac.core.errors import SACError, Terminated

#: subcommands in the order ``sac --help`` lists them
SUBCOMMANDS = {"demo": demo, "backbones": backbones, "train": train, "segment": segment,
               "refine": refine, "evaluate": evaluate, "tune": tune,
               "merge-slide": merge_slide}


def build_parser() -> argparse.ArgumentParser:
    """Argument parser with all subcommands."""
    parser = Parser(
        prog="sac",
        description="Segment Any Cell: nucleus segmentation with Segment Anything, on a CPU.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"sac {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in SUBCOMMANDS.values():
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sac`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for records and re-launching
    if args.command is None:
        parser.print_help(sys.stderr)
        print("\nsac: error: no command given (see the list above)", file=sys.stderr)
        return 4
    try:
        with sigterm_raises():
            return SUBCOMMANDS[args.command].run(args)
    except SACError as exc:
        print(f"sac {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("sac: interrupted; the input in progress left no outputs", file=sys.stderr)
        return 130
    except Terminated:
        print("sac: terminated (SIGTERM); the input in progress left no outputs",
              file=sys.stderr)
        return Terminated.exit_code


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """SIGTERM raises :class:`Terminated` in the main thread while the command runs (the
    previous handler is restored after), so it unwinds like Ctrl-C does."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    raise SystemExit(main())
