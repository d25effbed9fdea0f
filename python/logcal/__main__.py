"""``python -m logcal``: the same as the ``logcal`` command."""

import sys

from .cli import main

sys.exit(main())
