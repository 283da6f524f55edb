"""``python -m hotswap.cli``."""

import sys

from hotswap.cli import main

sys.exit(main())
