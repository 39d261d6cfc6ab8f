"""The ``sac`` command line: argument parsing and printing over the Python API."""

from sac.cli.main import main

__all__ = ["main"]
