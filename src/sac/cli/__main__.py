"""``python -m sac.cli``: the ``sac`` command."""

from sac.cli import main

raise SystemExit(main())
