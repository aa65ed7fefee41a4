"""``python -m saecore`` is the ``saecore`` command."""

from saecore.cli.main import main

raise SystemExit(main())
