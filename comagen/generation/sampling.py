"""How a token is drawn from the logits: temperature, top-k, top-p and min-p, under a mask of what is allowed."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch

from comagen.errors import ConfigError

DECISIONS = ("pitch", "velocity", "duration", "timing")  # what a REMI step decides (comagen.generation.leans)
STRENGTH_MAX = 8.0
TEMPERATURE_FACTOR_RANGE = (0.1, 3.0)


@dataclass
class Sampling:
    """Temperature 0 means greedy; top_k 0, top_p 1 and min_p 0 switch those filters off.
    The leans (comagen.generation.leans) keep a continuation near its prompt: key_strength on which
    pitch classes, register_strength on which octaves, dynamics_strength on velocities,
    density_strength on the timing decisions; 0 leaves them be. Each `*_temperature` multiplies the
    temperature for that kind of decision (1 = the same)."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    key_strength: float = 0.0
    register_strength: float = 0.0
    dynamics_strength: float = 0.0
    density_strength: float = 0.0
    pitch_temperature: float = 1.0
    velocity_temperature: float = 1.0
    duration_temperature: float = 1.0
    timing_temperature: float = 1.0

    def __post_init__(self) -> None:
        if self.temperature < 0 or not 0 < self.top_p <= 1 or not 0 <= self.min_p < 1 or self.top_k < 0:
            raise ConfigError("sampling needs temperature >= 0, 0 < top_p <= 1, 0 <= min_p < 1, top_k >= 0")
        for name, (low, high) in self.ranges().items():
            if not low <= getattr(self, name) <= high:
                raise ConfigError(f"{name} must be between {low:g} and {high:g}, not {getattr(self, name)}")

    @classmethod
    def ranges(cls) -> dict[str, tuple[float, float]]:
        """The allowed range of every lean's strength and every decision's temperature factor."""
        strengths = {f.name: (0.0, STRENGTH_MAX) for f in fields(cls) if f.name.endswith("_strength")}
        return strengths | dict.fromkeys(cls.temperature_names(), TEMPERATURE_FACTOR_RANGE)

    @staticmethod
    def temperature_names() -> tuple[str, ...]:
        return tuple(f"{d}_temperature" for d in DECISIONS)

    def decision_temperatures(self) -> dict[str, float] | None:
        """Each decision's temperature factor, or None when all are 1 (one temperature for every token)."""
        factors = {d: getattr(self, f"{d}_temperature") for d in DECISIONS}
        return None if all(f == 1.0 for f in factors.values()) else factors



def sample_next(logits: torch.Tensor, allowed: torch.Tensor, sampling: Sampling,
                generator: torch.Generator, factors: torch.Tensor | None = None) -> torch.Tensor:
    """One token per row from logits [B, V], restricted to `allowed` [B, V]; `factors` [B] scale each
    row's temperature (the decision it makes), None for the same temperature everywhere."""
    logits = logits.float().masked_fill(~allowed, -math.inf)
    if sampling.temperature == 0:
        return logits.argmax(-1)
    if factors is not None or sampling.temperature != 1:  # x / 1 is x: no pass over the logits for it
        logits = logits / (sampling.temperature if factors is None else sampling.temperature * factors[:, None])
    if sampling.top_k:
        kth = torch.topk(logits, min(sampling.top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, -math.inf)
    probs = torch.softmax(logits, dim=-1)
    if sampling.min_p:
        probs = probs.masked_fill(probs < sampling.min_p * probs.max(-1, keepdim=True).values, 0.0)
    if sampling.top_p < 1:
        sorted_p, order = probs.sort(-1, descending=True)
        drop = sorted_p.cumsum(-1) - sorted_p > sampling.top_p
        probs = probs.scatter(-1, order, sorted_p.masked_fill(drop, 0.0))
    return torch.multinomial(probs / probs.sum(-1, keepdim=True), 1, generator=generator).squeeze(-1)
