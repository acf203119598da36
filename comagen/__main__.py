"""Entry point for `python -m comagen`."""

import sys

from comagen.cli import main

sys.exit(main())
