"""One logging set-up for the app and the scripts: server logs keep the traceback of what failed,
while the user is shown a single line (a `ComagenError`'s message)."""

from __future__ import annotations

import logging
import os

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: str | None = None) -> None:
    """Log to stderr: comagen's loggers at COMAGEN_LOG_LEVEL (default INFO), other libraries at
    WARNING (their INFO chatter is not ours to show); a host's own set-up wins."""
    if not logging.getLogger().handlers:
        logging.basicConfig(format=FORMAT, level=logging.WARNING)
    logging.getLogger("comagen").setLevel((level or os.environ.get("COMAGEN_LOG_LEVEL", "INFO")).upper())
