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
    """--backbone, --sam-checkpoint, --device and --bf16."""
    from sac.sam.backbones import BACKBONES, DEFAULT_BACKBONE

    p.add_argument("--backbone", default=DEFAULT_BACKBONE, choices=sorted(BACKBONES),
                   help=f"SAM-family backbone (default: {DEFAULT_BACKBONE})")
    p.add_argument("--sam-checkpoint", type=Path, default=None,
                   help="base SAM checkpoint (.pth/.pt or .safetensors); default: bundled "
                        "LiteMedSAM weights for lite_medsam")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: cpu)")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (faster on some CPUs/GPUs)")
