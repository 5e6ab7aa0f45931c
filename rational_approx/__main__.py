"""``python -m rational_approx ...``: the ``rational-approx`` command line."""

from rational_approx.cli import main

raise SystemExit(main())
