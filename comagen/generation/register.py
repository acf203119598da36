"""A register lean: keep a continuation's pitches in the prompt's recent part of the keyboard.

The key prior picks pitch *classes*; it cannot tell a melody in the treble from the same notes three
octaves down, and the models wander in register (the continuation benchmark's register row,
docs/results.md). Each stream keeps a decayed histogram of the keys it has struck, spread over
neighbouring keys (a hand that plays around middle C also reaches a sixth away), and the sampler adds
`strength * log p(key)` to the pitch logits, keeping the pitch tokens' total probability, so only
*where* on the keyboard moves, never whether a note comes next.
"""

from __future__ import annotations

import torch

from comagen.generation.histogram import DecayedHistogram, spread
from comagen.music.grammar import RemiGrammar

HALF_LIFE_NOTES = 128
SMOOTHING = 0.02  # per key, after the spread: a far key stays possible
SPREAD_KEYS = 4.0  # standard deviation of the spread, in semitones


class RegisterPrior:
    """Per-row histograms of struck keys and the lean they give to every pitch token."""

    def __init__(self, grammar: RemiGrammar, prompt_ids: list[int], rows: int, strength: float) -> None:
        self.strength = strength
        self.pitch_ids, self.pitch_span = grammar.pitch_ids, grammar.pitch_span
        self._index_of = {int(i): n for n, i in enumerate(self.pitch_ids)}
        keys = torch.tensor([grammar.value[int(i)] for i in self.pitch_ids], dtype=torch.float)
        self.histogram = DecayedHistogram(len(keys), rows, HALF_LIFE_NOTES, SMOOTHING, spread(keys, SPREAD_KEYS))
        self.histogram.fill([self._index_of[int(t)] for t in prompt_ids if int(t) in self._index_of])

    def played(self, row: int, token: int) -> None:
        if token in self._index_of:
            self.histogram.add(row, self._index_of[token])

    def lean(self) -> torch.Tensor:
        """strength x log p(key) per row and pitch token [B, len(pitch_ids)]."""
        return self.strength * self.histogram.log_p()
