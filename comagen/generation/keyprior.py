"""A key-aware pitch prior for sampling: keep a continuation in the prompt's key, cheaply.

The model alone drifts away from the prompt's pitch classes (the continuation benchmark's key
consistency, docs/results.md). Each stream keeps a decayed pitch-class histogram of the prompt's
notes and the notes it has played since, updated by one note at a time, and the sampler adds
`strength * log p(pitch class)` (p the histogram, smoothed) to the logits of pitch tokens. The
pitch tokens' total probability is kept, so only *which* pitch is played moves, never whether a
note, a rest or a bar line comes next (density and silence are left to their own lean).
"""

from __future__ import annotations

import torch

from comagen.generation.histogram import DecayedHistogram
from comagen.music.grammar import RemiGrammar

HALF_LIFE_NOTES = 128  # older notes count half after this many newer ones: follows slow modulations
SMOOTHING = 0.5  # notes added to every pitch class, so an unheard class is unlikely, not impossible


class KeyPrior:
    """The per-row pitch-class histograms of one generation and the logit correction they give."""

    def __init__(self, grammar: RemiGrammar, prompt_ids: list[int], rows: int, strength: float) -> None:
        self.strength = strength
        self.pitch_ids, self.pitch_span = grammar.pitch_ids, grammar.pitch_span
        self.classes = torch.tensor([grammar.value[int(i)] % 12 for i in self.pitch_ids], dtype=torch.long)
        self._class_of = {int(i): int(c) for i, c in zip(self.pitch_ids, self.classes, strict=True)}
        self.histogram = DecayedHistogram(12, rows, HALF_LIFE_NOTES, SMOOTHING)
        self.histogram.fill([self._class_of[int(t)] for t in prompt_ids if int(t) in self._class_of])

    def played(self, row: int, token: int) -> None:
        """Count a token a row has just played (only pitches change anything)."""
        if token in self._class_of:
            self.histogram.add(row, self._class_of[token])

    def log_weights(self) -> torch.Tensor:
        """log p(pitch class) per row [B, 12] from the smoothed histograms."""
        return self.histogram.log_p()

    def lean(self) -> torch.Tensor:
        """strength x log p(pitch class) per row and pitch token [B, len(pitch_ids)]."""
        return self.strength * self.log_weights()[:, self.classes]

    def apply(self, logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """Logits [B, V] with pitch tokens re-weighted toward each row's key; the allowed pitch tokens'
        total probability is unchanged (strength 0 returns the logits themselves)."""
        if self.strength == 0:
            return logits
        return lean_pitches(logits, allowed, self.pitch_span, self.lean())


def lean_pitches(logits: torch.Tensor, allowed: torch.Tensor, pitch_ids: torch.Tensor | slice,
                 lean: torch.Tensor) -> torch.Tensor:
    """A copy of logits [B, V] with `lean` added to the pitch tokens (ids or a slice of them), their
    total mass kept."""
    out = logits.float().clone()
    out[:, pitch_ids] = kept_mass(out[:, pitch_ids], allowed[:, pitch_ids], lean)
    return out


def kept_mass(logits: torch.Tensor, allowed: torch.Tensor, lean: torch.Tensor) -> torch.Tensor:
    """`logits + lean` over a group of tokens [R, G], shifted so the allowed ones keep their total
    probability: a lean moves mass inside the group, never in or out of it."""
    group = logits.masked_fill(~allowed, -torch.inf)
    moved = group + lean
    before, after = torch.logsumexp(group, -1, keepdim=True), torch.logsumexp(moved, -1, keepdim=True)
    shift = (before - after).nan_to_num(0.0)  # no allowed token in the group: -inf - -inf, nothing to keep
    return moved + shift
