"""What every ``sac`` subcommand shares: the parser class, the exit-code epilog, model options."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from sac.pipeline.options import SegmentOptions

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


def add_segment_options(p: argparse.ArgumentParser | argparse._ArgumentGroup,
                        names: tuple[str, ...] | None = None) -> None:
    """The flags of the :class:`~sac.pipeline.options.SegmentOptions` fields ``names`` (default:
    every field that has one), as that class declares them; :func:`options_from` reads them
    back. ``--precision`` comes with ``--bf16``, its older spelling."""
    from sac.core.checks import option
    from sac.pipeline.options import SegmentOptions, option_flags

    flags = option_flags()
    for name in flags if names is None else names:
        meta = flags[name]
        default = SegmentOptions.__dataclass_fields__[name].default
        shown = "" if "default" in meta["help"] or meta["off"] else f" (default {default})"
        kw: dict[str, Any] = {"dest": name, "help": meta["help"] + shown}
        if meta["off"]:
            kw.update(action="store_false")
        elif meta["choices"] is not None:
            kw.update(choices=meta["choices"], default=default)
        else:
            lo, hi = meta["bounds"]
            kw.update(type=option(meta["flag"], lo, hi, integer=meta["integer"]),
                      default=default)
        p.add_argument(meta["flag"], **kw)
        if name == "precision":
            p.add_argument("--bf16", dest="precision", action="store_const", const="bf16",
                           help="same as --precision bf16")


def options_from(args: argparse.Namespace) -> SegmentOptions:
    """The :class:`~sac.pipeline.options.SegmentOptions` of the parsed flags (defaults for
    those the command does not have)."""
    from sac.pipeline.options import SegmentOptions, option_flags

    return SegmentOptions(**{name: getattr(args, name) for name in option_flags()
                             if hasattr(args, name)})


def add_runtime(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """--runtime: where the image encoder runs."""
    add_segment_options(p, ("runtime",))


def add_precision(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """--precision (and --bf16, its older spelling): the one declaration for every command."""
    add_segment_options(p, ("precision",))
