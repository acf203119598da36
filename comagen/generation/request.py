"""What to generate: one `Request`, checked once, and the token budget a length in seconds needs."""

from __future__ import annotations

from dataclasses import dataclass, field

from comagen.errors import ConfigError
from comagen.generation.sampling import Sampling
from comagen.runtime import check_runtime

TOKENS_PER_SECOND_CAP = 150  # the densest music a length request budgets for (MAESTRO averages ~37)
MAX_TOKENS_CAP = 100_000  # per variation: ten minutes at that density, and a 256-token margin


def tokens_for_seconds(seconds: float) -> int:
    """A token budget that `seconds` of even very dense music fits in (the length stops it first)."""
    return min(int(seconds * TOKENS_PER_SECOND_CAP) + 256, MAX_TOKENS_CAP)


@dataclass
class Request:
    """What to generate. Stops at `max_tokens`, after `seconds` of new music or at the form's end;
    at EOS only when neither a length in seconds nor a form was asked for. `runtime` picks what
    computes the logits (see comagen.runtime.choose); the music depends only on the logits."""

    max_tokens: int = 1024
    seconds: float | None = None
    sampling: Sampling = field(default_factory=Sampling)
    seed: int = 0
    variations: int = 1
    composer: int = 0
    guidance: float = 1.0
    windows: list[int] | None = None
    form: str | None = None
    section_bars: int = 4
    runtime: str = "auto"

    def __post_init__(self) -> None:
        check_runtime(self.runtime)
        if not 1 <= self.max_tokens <= MAX_TOKENS_CAP:
            raise ConfigError(f"max_tokens must be between 1 and {MAX_TOKENS_CAP}")
        if not 1 <= self.variations <= 16:
            raise ConfigError("variations must be between 1 and 16")
        if self.guidance < 0:
            raise ConfigError("guidance must be >= 0")
        if self.section_bars < 1:
            raise ConfigError("section_bars must be >= 1")
