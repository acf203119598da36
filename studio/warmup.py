"""Warm the default checkpoint at start-up: one short take through the app's own generation path
(sampling, the live notes and roll, the FluidSynth render), so the first visitor's Generate does
not pay for the ONNX session's creation, the soundfont's loading and the first calls of each code
path; runs on its own thread and only logs if it fails."""

from __future__ import annotations

import logging
import threading
from dataclasses import replace

from comagen.errors import ComagenError
from comagen.generation.prompt import Prompt
from comagen.generation.settings import bundle_settings
from studio.catalog import Checkpoints
from studio.jobs import stream

log = logging.getLogger("comagen.studio")
WARM_SECONDS = 2.0


def warm_up(checkpoints: Checkpoints, name: str) -> threading.Thread:
    """A WARM_SECONDS take with checkpoint `name`'s tuned settings, in the background."""

    def run() -> None:
        try:
            bundle = checkpoints.get(name)
            settings = replace(bundle_settings(bundle), seconds=WARM_SECONDS, variations=1)
            request = settings.request(bundle.composers, bundle.config.windows, max_tokens=512)
            for _ in stream(bundle, Prompt.empty(), request, name, sound=True):
                pass
        except ComagenError as exc:
            log.warning("warm-up of %s skipped: %s", name, exc)

    thread = threading.Thread(target=run, daemon=True, name="comagen-warm-up")
    thread.start()
    return thread
