"""How a token is drawn from the logits: temperature, top-k, top-p and min-p, under a mask of what is allowed."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

from comagen import native
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


class Uniforms:
    """A generator's float64 uniforms, drawn a block at a time: on the CPU, torch draws the same numbers
    in one call of n as in n calls of one, and a call costs microseconds the engine spends per token."""

    BLOCK = 1024

    def __init__(self, generator: torch.Generator) -> None:
        self.generator, self.block, self.used = generator, np.zeros(0), 0

    def take(self, n: int) -> np.ndarray:
        if self.used + n > len(self.block):
            fresh = torch.rand(max(self.BLOCK, n), generator=self.generator, dtype=torch.float64).numpy()
            self.block, self.used = np.concatenate([self.block[self.used:], fresh]), 0
        self.used += n
        return self.block[self.used - n:self.used]


def sample_next(logits: torch.Tensor, allowed: torch.Tensor, sampling: Sampling,
                generator: torch.Generator, factors: torch.Tensor | np.ndarray | None = None) -> torch.Tensor:
    """One token per row from logits [B, V], restricted to `allowed` [B, V]; `factors` [B] scale each
    row's temperature (the decision it makes), None for the same temperature everywhere."""
    return torch.from_numpy(sample_rows(logits.float().numpy(), allowed.numpy(), sampling,
                                        row_uniforms(len(logits), sampling, generator),
                                        None if factors is None else np.asarray(factors)))


def row_uniforms(rows: int, sampling: Sampling, generator: torch.Generator) -> np.ndarray:
    """One float64 uniform per row from `generator` for `sample_rows` (none when greedy)."""
    return np.zeros(0) if sampling.temperature == 0 else \
        torch.rand(rows, generator=generator, dtype=torch.float64).numpy()


def sample_rows(logits: np.ndarray, allowed: np.ndarray, sampling: Sampling, uniform: np.ndarray,
                factors: np.ndarray | None = None) -> np.ndarray:
    """`sample_next` on numpy rows with one uniform per row [B] (unused when greedy), as the engine
    calls it between two steps.

    The filters run in numpy and the draw is an inverse CDF of the row's uniform: on a batch-1 row
    of a few hundred tokens torch's per-call cost (about 50 us for its multinomial alone) outweighed
    the arithmetic, and this runs once per token of every stream. Without top-k, top-p or min-p the
    compiled draw runs instead (comagen.native), the same arithmetic."""
    if native.LIB is not None and not (sampling.top_k or sampling.min_p) and sampling.top_p == 1:
        return native_rows(logits, allowed, sampling.temperature, uniform, factors)
    x = np.where(allowed, logits, -np.inf)
    if sampling.temperature == 0:
        return x.argmax(-1)
    if factors is not None or sampling.temperature != 1:  # x / 1 is x: no pass over the logits for it
        x = x / (sampling.temperature if factors is None else sampling.temperature * factors[:, None])
    if sampling.top_k and sampling.top_k < x.shape[-1]:
        kth = np.partition(x, -sampling.top_k, axis=-1)[:, -sampling.top_k, None]
        x = np.where(x < kth, -np.inf, x)
    x -= x.max(-1, keepdims=True)
    probs = np.exp(x, out=x)
    if sampling.min_p:
        probs[probs < sampling.min_p * probs.max(-1, keepdims=True)] = 0.0
    if sampling.top_p < 1:
        order = np.argsort(-probs, axis=-1, kind="stable")
        sorted_p = np.take_along_axis(probs, order, -1)
        cum = sorted_p.cumsum(-1)
        drop = cum - sorted_p > sampling.top_p * cum[:, -1:]
        np.put_along_axis(probs, order, np.where(drop, 0.0, sorted_p), -1)
    return draw(probs, uniform)


def native_rows(logits: np.ndarray, allowed: np.ndarray, temperature: float, uniform: np.ndarray,
                factors: np.ndarray | None) -> np.ndarray:
    """`sample_rows` with no filters, one compiled call a row."""
    logits, allowed = np.ascontiguousarray(logits, np.float32), np.ascontiguousarray(allowed, bool)
    width, at, may = logits.shape[-1], logits.ctypes.data, allowed.ctypes.data
    return np.array([native.LIB.draw_row(at + r * width * 4, may + r * width, width,
                                         temperature * (1.0 if factors is None else factors[r]),
                                         float(uniform[r]) if temperature else 0.0)
                     for r in range(len(logits))], dtype=np.int64)


def draw(weights: np.ndarray, uniform: np.ndarray) -> np.ndarray:
    """Per row, the index whose share of the row's cumulative weight holds `uniform` (inverse CDF):
    never an index of weight 0, since the cumulative sum does not rise there."""
    cdf = weights.cumsum(-1, dtype=np.float64)
    last = weights.shape[-1] - 1
    if len(cdf) == 1:  # the engine's usual batch: one binary search, not a compare, a count and a clip
        return np.array([min(int(np.searchsorted(cdf[0], uniform[0] * cdf[0, -1], side="right")), last)])
    return np.minimum((cdf <= uniform[:, None] * cdf[:, -1:]).sum(-1), last)
