"""MkDocs hook: the command-line reference is generated from the ``sac`` argparse parsers at
every build, so the documentation cannot drift from the options (``docs/cli.md`` holds the
marker it replaces)."""

from __future__ import annotations

import argparse
import re
from typing import Any

MARKER = "<!-- sac-cli-reference -->"


def reference() -> str:
    """Markdown of every subcommand's ``--help``, in ``sac --help``'s order."""
    import os

    from sac.cli.main import SUBCOMMANDS, build_parser

    os.environ["COLUMNS"] = "100"  # argparse wraps at the terminal's width: fix it
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    parts = ["```text", _plain(parser.format_help()), "```"]
    for name in SUBCOMMANDS:
        parts += [f"## sac {name}", "", "```text", _plain(sub.choices[name].format_help()),
                  "```", ""]
    return "\n".join(parts)


def _plain(text: str) -> str:
    return re.sub(r"[ \t]+\n", "\n", text).strip()


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    if MARKER in markdown:
        return markdown.replace(MARKER, reference())
    return markdown
