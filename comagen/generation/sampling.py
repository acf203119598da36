"""How a token is drawn from the logits: temperature, top-k, top-p and min-p, under a mask of what is allowed."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from comagen.errors import ConfigError


@dataclass
class Sampling:
    """Temperature 0 means greedy; top_k 0, top_p 1 and min_p 0 switch those filters off;
    key_strength > 0 leans pitches toward the prompt's key (comagen.generation.keyprior), 0 leaves them be."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    key_strength: float = 0.0

    def __post_init__(self) -> None:
        if self.temperature < 0 or not 0 < self.top_p <= 1 or not 0 <= self.min_p < 1 or self.top_k < 0 \
                or not 0 <= self.key_strength <= 8:
            raise ConfigError("sampling needs temperature >= 0, 0 < top_p <= 1, 0 <= min_p < 1, top_k >= 0, "
                              "0 <= key_strength <= 8")


def sample_next(logits: torch.Tensor, allowed: torch.Tensor, sampling: Sampling,
                generator: torch.Generator) -> torch.Tensor:
    """One token per row from logits [B, V], restricted to `allowed` [B, V]."""
    logits = logits.float().masked_fill(~allowed, -math.inf)
    if sampling.temperature == 0:
        return logits.argmax(-1)
    logits = logits / sampling.temperature
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
