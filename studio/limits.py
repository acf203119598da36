"""The app's own caps on what one request of a shared server may cost, and the request they allow.

`Settings` holds each generation setting's full range (what the CLI allows); the page narrows a few
of them here, so one click cannot hold the server for longer than a few minutes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from comagen.bundle.checkpoint import Bundle
from comagen.errors import ComagenError
from comagen.generation.request import Request
from comagen.generation.settings import Settings

UPLOAD_MAX_BYTES = 2 * 1024 * 1024  # MAESTRO performances are all well under 1 MB
PROMPT_MAX_SECONDS = 60.0
PROMPT_MAX_TOKENS = 12000  # an upload's kept seconds denser than this (thousands of notes a second) are refused
MAX_SECONDS = 300  # longest continuation one request may ask for (the CLI allows 600)
TOKEN_CAP = 30000  # per variation and request: ~300 s of dense piano
CONTEXT_CAP = 60000  # prompt + continuations a Continue may build on
MAX_VARIATIONS = 4
MAX_SCALES = 4  # window sliders the page has room for


@dataclass(frozen=True)
class AppLimits:
    """The app's own caps on top of `Settings`' ranges: what one request of a shared server may cost."""

    max_seconds: int = MAX_SECONDS
    max_variations: int = MAX_VARIATIONS
    token_cap: int = TOKEN_CAP


LIMITS = AppLimits()


def scales_of(bundle: Bundle) -> list[int]:
    """The trained window of each attention scale (none for a model without multi-scale attention)."""
    return list(bundle.config.windows) if bundle.config.arch == "conformer" else []


def app_request(bundle: Bundle, settings: Settings, random_seed: bool = True, limits: AppLimits = LIMITS) -> Request:
    """A request within the app's limits; the seed is drawn here when random is on, and only the
    checkpoint's scales are read from the page's window sliders (the model checks their values)."""
    if not 1 <= settings.seconds <= limits.max_seconds:
        raise ComagenError(f"length must be between 1 and {limits.max_seconds} seconds")
    if not 1 <= int(settings.variations) <= limits.max_variations:
        raise ComagenError(f"variations must be between 1 and {limits.max_variations}")
    seed = random.randrange(2**31) if random_seed else int(settings.seed)
    trained = scales_of(bundle)
    settings = replace(settings, windows=tuple(settings.windows[:len(trained)]))
    return settings.request(bundle.composers, trained, max_tokens=limits.token_cap, seed=seed)
