"""Subcommands of the ``sac`` command line, one module each (``add_parser`` + ``run``)."""
