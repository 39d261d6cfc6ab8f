"""``sac merge-slide``: write a slide's GeoJSON and CSV from the parts its shards left."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sac.cli.common import EPILOG


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``merge-slide`` on the ``sac`` subcommand parser."""
    p = sub.add_parser(
        "merge-slide", help="assemble a slide's outputs from the parts of sharded runs",
        description="After sac segment --shard I/N over a whole slide, the last shard to "
        "finish writes the slide's files; this does it explicitly from the "
        "<stem>.sac-parts folder, once every chunk has its part.", epilog=EPILOG)
    p.add_argument("parts", nargs="+", type=Path,
                   help="<stem>.sac-parts folder(s) in the output folder")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")


def run(args: argparse.Namespace) -> int:
    """Assemble each parts folder; a failing one is reported and the others go on."""
    from sac.core.errors import SACError
    from sac.slides.segment import merge_parts

    codes = []
    for parts in args.parts:
        try:
            n, outputs = merge_parts(parts, args.overwrite)
        except SACError as exc:
            print(f"sac merge-slide: error: {exc}", file=sys.stderr)
            codes.append(exc.exit_code)
            continue
        print(f"{parts.name}: {n} nuclei -> {', '.join(str(p) for p in outputs.values())}")
    return 0 if not codes else (codes[0] if len(set(codes)) == 1 else 1)
