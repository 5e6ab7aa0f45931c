"""``python -m rsae ...`` (and ``torchrun -m rsae ...``): the ``rsae`` command line."""

from rsae.cli import main

raise SystemExit(main())
