"""A dynamics lean: keep a continuation's velocities near the prompt's recent ones.

Left alone the models drift to another volume within bars (the continuation benchmark's dynamics
row, docs/results.md). Each stream keeps a decayed histogram of the velocity bins it has heard,
spread over neighbouring bins (a performer who plays 60 also plays 58 and 63), and the sampler
adds `strength * log p(velocity)` to the velocity logits. A velocity is the only kind of token the
grammar allows after a pitch, so only *how loud* moves, never what comes next.
"""

from __future__ import annotations

import numpy as np

from comagen import native
from comagen.generation.histogram import DecayedHistogram, spread
from comagen.music.grammar import AFTER_PITCH, GrammarState, RemiGrammar

HALF_LIFE_NOTES = 64  # dynamics change faster than keys: a phrase, not a section
SMOOTHING = 0.05  # per bin, after the spread: an unheard loudness is unlikely, not impossible
SPREAD_BINS = 1.5  # standard deviation of the spread, in velocity bins (4 MIDI steps each with 32 bins)


class DynamicsPrior(native.KeepsAddresses):
    """Per-row velocity histograms and the logit correction they give to rows about to pick a velocity."""

    def __init__(self, grammar: RemiGrammar, prompt_ids: list[int], rows: int, strength: float) -> None:
        self.strength = strength
        self.velocity_ids = grammar.velocity_ids.numpy().astype(np.int64)
        ids = self.velocity_ids.tolist()
        self._bin_of = {i: b for b, i in enumerate(ids)}
        self.histogram = DecayedHistogram(len(ids), rows, HALF_LIFE_NOTES, SMOOTHING,
                                          spread(np.arange(len(ids), dtype=float), SPREAD_BINS))
        self.histogram.fill([self._bin_of[int(t)] for t in prompt_ids if int(t) in self._bin_of])
        self.take_addresses()

    def take_addresses(self) -> None:
        self._velocity_at = self.velocity_ids.ctypes.data  # for the compiled lean

    def played(self, row: int, token: int) -> None:
        if token in self._bin_of:
            self.histogram.add(row, self._bin_of[token])

    def apply(self, logits: np.ndarray, states: list[GrammarState]) -> None:
        """Lean the velocity logits [B, V] of rows after a pitch toward their dynamics, in place."""
        rows = [i for i, s in enumerate(states) if s.state == AFTER_PITCH]
        if rows and native.reads(logits):
            log_p = self.histogram.log_p()
            for r in rows:  # compiled: one call a row
                native.LIB.add_scaled(logits.ctypes.data + logits.strides[0] * r, self._velocity_at,
                                      len(self.velocity_ids), self.strength, log_p.ctypes.data + log_p.strides[0] * r)
        elif rows:
            index = np.array(rows)
            logits[index[:, None], self.velocity_ids] += self.strength * self.histogram.log_p()[index]
