"""Warm the default checkpoint at start-up, so the first visitor's Generate does not pay for the
ONNX session's creation and the first calls of each code path (about 0.1-0.2 s of the first note's
wait on this machine); runs on its own thread and only logs if it fails."""

from __future__ import annotations

import logging
import threading

from comagen.errors import ComagenError
from comagen.generation.prompt import Prompt
from comagen.generation.session import generate
from comagen.generation.settings import bundle_settings
from studio.catalog import Checkpoints

log = logging.getLogger("comagen.studio")
WARM_TOKENS = 16


def warm_up(checkpoints: Checkpoints, name: str) -> threading.Thread:
    """Sample a few tokens with checkpoint `name`'s tuned settings, in the background."""

    def run() -> None:
        try:
            bundle = checkpoints.get(name)
            request = bundle_settings(bundle).request(bundle.composers, bundle.config.windows, max_tokens=WARM_TOKENS)
            generate(bundle, Prompt.empty(), request)
        except ComagenError as exc:
            log.warning("warm-up of %s skipped: %s", name, exc)

    thread = threading.Thread(target=run, daemon=True, name="comagen-warm-up")
    thread.start()
    return thread
