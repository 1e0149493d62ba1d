"""``python -m hdpbench.book``: execute the notebooks and build the HTML book."""

import sys

from hdpbench.book.build import main

sys.exit(main())
