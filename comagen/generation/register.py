"""A register lean: keep a continuation's pitches in the prompt's recent part of the keyboard.

The key prior picks pitch *classes*; it cannot tell a melody in the treble from the same notes three
octaves down, and the models wander in register (the continuation benchmark's register row,
docs/results.md). Each stream keeps a decayed histogram of the keys it has struck, spread over
neighbouring keys (a hand that plays around middle C also reaches a sixth away), and the sampler adds
`strength * log p(key)` to the pitch logits, keeping the pitch tokens' total probability, so only
*where* on the keyboard moves, never whether a note comes next.
"""

from __future__ import annotations

import numpy as np

from comagen.generation.histogram import DecayedHistogram, spread
from comagen.generation.keyprior import span_of
from comagen.music.grammar import RemiGrammar

HALF_LIFE_NOTES = 128
SMOOTHING = 0.02  # per key, after the spread: a far key stays possible
SPREAD_KEYS = 4.0  # standard deviation of the spread, in semitones


class RegisterPrior:
    """Per-row histograms of struck keys and the lean they give to every pitch token."""

    def __init__(self, grammar: RemiGrammar, prompt_ids: list[int], rows: int, strength: float) -> None:
        self.strength = strength
        self.pitch_span = span_of(grammar)
        self._index_of = {i: n for n, i in enumerate(grammar.pitch_ids.tolist())}
        keys = np.array([grammar.value[i] for i in self._index_of], dtype=float)
        self.histogram = DecayedHistogram(len(keys), rows, HALF_LIFE_NOTES, SMOOTHING, spread(keys, SPREAD_KEYS))
        self.histogram.fill([self._index_of[int(t)] for t in prompt_ids if int(t) in self._index_of])
        self._lean: tuple[np.ndarray | None, np.ndarray] = (None, np.zeros(0))

    def played(self, row: int, token: int) -> None:
        if token in self._index_of:
            self.histogram.add(row, self._index_of[token])

    def lean(self) -> np.ndarray:
        """strength x log p(key) per row and pitch token [B, len(pitch_ids)], kept until a row plays a pitch."""
        log_p = self.histogram.log_p()
        if self._lean[0] is not log_p:
            self._lean = (log_p, self.strength * log_p)
        return self._lean[1]
