"""Allow ``python -m sac``."""

from sac.cli import main

raise SystemExit(main())
