"""``sac backbones``: list the SAM-family backbones."""

from __future__ import annotations

import argparse

from sac.cli.common import EPILOG


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``backbones`` on the ``sac`` subcommand parser."""
    sub.add_parser("backbones", help="list the available backbones", epilog=EPILOG)


def run(_: argparse.Namespace) -> int:
    """Print the backbone registry (``*`` marks the default)."""
    from sac.sam.backbones import BACKBONES, DEFAULT_BACKBONE

    for name, spec in BACKBONES.items():
        mark = "*" if name == DEFAULT_BACKBONE else " "
        print(f"{mark} {name:12s} {spec.description}")
    return 0
