"""What every ``sac`` subcommand shares: the parser class, the exit-code epilog, model options."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn

EPILOG = (
    "exit codes: 0 ok, 1 failure, 2 bad input, 3 weights missing/invalid, 4 bad option, "
    "130 interrupted, 143 terminated (SIGTERM)"
)


class Parser(argparse.ArgumentParser):
    """``argparse`` with SAC's exit code for a bad option (4), for every subcommand too."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(4, f"{self.prog}: error: {message}\n")


def add_model_options(p: argparse.ArgumentParser) -> None:
    """--backbone, --sam-checkpoint, --device and --precision."""
    from sac.sam.backbones import BACKBONES, DEFAULT_BACKBONE

    p.add_argument("--backbone", default=DEFAULT_BACKBONE, choices=sorted(BACKBONES),
                   help=f"SAM-family backbone (default: {DEFAULT_BACKBONE})")
    p.add_argument("--sam-checkpoint", type=Path, default=None,
                   help="base SAM checkpoint (.pth/.pt or .safetensors); default: bundled "
                        "LiteMedSAM weights for lite_medsam")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: cpu)")
    add_precision(p)


def add_save_flags(p: argparse.ArgumentParser, kinds: tuple[str, ...]) -> None:
    """``--save-<kind>`` for each output kind of ``kinds`` (:mod:`sac.outputs.kinds`)."""
    from sac.outputs.kinds import KINDS

    for name in kinds:
        kind = KINDS[name]
        p.add_argument(f"--save-{name}", action="store_true",
                       help=f"also write <stem>{kind.ending}: {kind.what}")


def saved_kinds(args: argparse.Namespace, kinds: tuple[str, ...]) -> tuple[str, ...]:
    """The kinds of ``kinds`` whose ``--save-<kind>`` flag was given."""
    return tuple(k for k in kinds if getattr(args, f"save_{k}"))


def add_runtime(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """--runtime: where the image encoder runs."""
    from sac.sam.runtime import RUNTIMES

    p.add_argument("--runtime", choices=RUNTIMES, default="auto",
                   help="where the image encoder runs: auto (default) = OpenVINO on a CPU "
                        "where it is installed (pip install 'segment-any-cell[openvino]'; "
                        "about 2x faster, converted once into ~/.cache/sac or $SAC_CACHE), "
                        "else torch")


def add_precision(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """--precision (and --bf16, its older spelling): the one declaration for every command."""
    from sac.core.device import PRECISIONS

    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="auto (default): bf16 where the CPU computes it natively (AVX512-BF16 "
                        "or AMX; about 2x faster there) or on a GPU, fp32 elsewhere (bf16 is "
                        "emulated on AVX2-only CPUs, most laptops, and several times slower)")
    p.add_argument("--bf16", dest="precision", action="store_const", const="bf16",
                   help="same as --precision bf16")
