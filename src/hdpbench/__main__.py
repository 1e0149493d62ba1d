"""``python -m hdpbench`` = the ``hdpbench`` command."""

import sys

from hdpbench.cli import main

sys.exit(main())
