"""``python -m gophermart`` is the same as the ``gophermart`` command."""

import sys

from gophermart.entrypoints.cli import main

sys.exit(main())
