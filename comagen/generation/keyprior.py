"""A key-aware pitch prior for sampling: keep a continuation in the prompt's key, cheaply.

The model alone drifts away from the prompt's pitch classes (the continuation benchmark's key
consistency, docs/results.md). Each stream keeps a decayed pitch-class histogram of the prompt's
notes and the notes it has played since, updated by one note at a time, and the sampler adds
`strength * log p(pitch class)` (p the histogram, smoothed) to the logits of pitch tokens. The
pitch tokens' total probability is kept, so only *which* pitch is played moves, never whether a
note, a rest or a bar line comes next (density and silence are left to their own lean).
"""

from __future__ import annotations

import numpy as np

from comagen.generation.histogram import DecayedHistogram
from comagen.music.grammar import RemiGrammar

HALF_LIFE_NOTES = 128  # older notes count half after this many newer ones: follows slow modulations
SMOOTHING = 0.5  # notes added to every pitch class, so an unheard class is unlikely, not impossible

Span = slice | np.ndarray  # the pitch tokens: one run of ids, or the ids themselves


def span_of(grammar: RemiGrammar) -> Span:
    """The grammar's pitch tokens as a numpy index (a slice when they are one run)."""
    span = grammar.pitch_span
    return span if isinstance(span, slice) else span.numpy()


class KeyPrior:
    """The per-row pitch-class histograms of one generation and the logit correction they give."""

    def __init__(self, grammar: RemiGrammar, prompt_ids: list[int], rows: int, strength: float) -> None:
        self.strength = strength
        self.pitch_span = span_of(grammar)
        pitch_ids = grammar.pitch_ids.tolist()
        self.classes = np.array([grammar.value[i] % 12 for i in pitch_ids])
        self._class_of = {i: int(c) for i, c in zip(pitch_ids, self.classes, strict=True)}
        self.histogram = DecayedHistogram(12, rows, HALF_LIFE_NOTES, SMOOTHING)
        self.histogram.fill([self._class_of[int(t)] for t in prompt_ids if int(t) in self._class_of])
        self._lean: tuple[np.ndarray | None, np.ndarray] = (None, np.zeros(0))

    def played(self, row: int, token: int) -> None:
        """Count a token a row has just played (only pitches change anything)."""
        if token in self._class_of:
            self.histogram.add(row, self._class_of[token])

    def lean(self) -> np.ndarray:
        """strength x log p(pitch class) per row and pitch token [B, len(pitch_ids)], kept until a row
        plays a pitch."""
        log_p = self.histogram.log_p()
        if self._lean[0] is not log_p:
            self._lean = (log_p, self.strength * log_p[:, self.classes])
        return self._lean[1]


def lean_pitches(logits: np.ndarray, allowed: np.ndarray, pitch_ids: Span, lean: np.ndarray,
                 weight: np.ndarray | None = None) -> None:
    """Add `lean` to the pitch tokens of logits [B, V] in place, their total mass kept (`weight`:
    exp(lean) when the caller keeps it)."""
    logits[:, pitch_ids] = kept_mass(logits[:, pitch_ids], allowed[:, pitch_ids], lean, weight)


def kept_mass(logits: np.ndarray, allowed: np.ndarray, lean: np.ndarray,
              weight: np.ndarray | None = None) -> np.ndarray:
    """`logits + lean` over a group of tokens [R, G], shifted so the allowed ones keep their total
    probability: a lean moves mass inside the group, never in or out of it (`weight`: exp(lean))."""
    group = np.where(allowed, logits, -np.inf)
    top = group.max(-1, keepdims=True)
    share = np.exp(group - np.where(top > -np.inf, top, 0.0))  # 0 where not allowed
    before = share.sum(-1, keepdims=True)
    after = (share * (np.exp(lean) if weight is None else weight)).sum(-1, keepdims=True)
    shift = np.log(np.where(before > 0, before, 1.0) / np.where(before > 0, after, 1.0))  # none allowed: no shift
    return group + lean + shift
