"""``python -m hdpbench`` = the ``hdpbench`` command."""

import sys

from .cli import main

sys.exit(main())
