"""A density lean: keep a continuation's pace (notes per second, chords, rests) near the prompt's.

The models drift to another pace (the continuation benchmark's density row, docs/results.md). The
pace of a performance is its distribution of gaps between one note's onset and the next, in grid
positions: 0 for a chord note, a few positions in a fast run, a bar or more across a rest. Each
stream keeps a decayed histogram of those gaps on doubling bins (0, 1, 2, 3-4, 5-8, ...), and every
timing decision is leaned by the prior mass of the gaps it leads to:

- after a note: another pitch (gap 0), a later position (its gap), or a bar line (any gap that
  reaches the next bar or beyond: the tail mass);
- after a bar line: a position (its gap) or another bar line (the tail again).

The decisions' leans multiply to the gap's prior along the path, and the timing tokens keep their
total probability, so whether the piece ends stays the model's choice.
"""

from __future__ import annotations

import numpy as np

from comagen import native
from comagen.generation.histogram import DecayedHistogram
from comagen.music.grammar import AFTER_BAR, AFTER_DURATION, GrammarState, RemiGrammar

HALF_LIFE_NOTES = 128
SMOOTHING = 0.2  # per bin: a pace never heard in the prompt stays possible
MAX_GAP_BARS = 4  # gaps beyond this many bars count as the longest
TIMING_STATES = (AFTER_DURATION, AFTER_BAR)  # the grammar states whose decision is when the next note comes


def gap_edges(positions_per_bar: int) -> list[int]:
    """First gap of each bin: 0, 1, 2, 3, 5, 9, 17, ... up to the longest gap counted."""
    edges, top = [0, 1, 2], MAX_GAP_BARS * positions_per_bar
    while edges[-1] * 2 - 1 < top:
        edges.append(edges[-1] * 2 - 1)
    return [*edges, top + 1]


class DensityPrior(native.KeepsAddresses):
    """Per-row gap histograms, each row's last onset, and the lean they give to timing decisions."""

    def __init__(self, grammar: RemiGrammar, prompt_ids: list[int], rows: int, strength: float) -> None:
        self.strength = strength
        self.per_bar = grammar.positions_per_bar
        edges = gap_edges(self.per_bar)
        self.longest = edges[-1] - 1
        widths = np.diff(edges)
        self.bin_of = np.repeat(np.arange(len(widths), dtype=np.int64), widths)  # gap -> bin
        self.log_width = np.log(widths)[self.bin_of]
        self.histogram = DecayedHistogram(len(widths), rows, HALF_LIFE_NOTES, SMOOTHING)
        self.tail_class = len(widths)  # a bar line's class: every gap that reaches past this bar
        self.kind = grammar.kind
        position_id = grammar.position_id.numpy()
        self.positions = np.flatnonzero(position_id >= 0).astype(np.int64)  # the bar's positions the vocab has
        self.position_ids = position_id[self.positions]
        self.pitch_ids = grammar.pitch_ids.numpy()
        timing = [self.position_ids, [grammar.bar_id], self.pitch_ids]
        self.ids = np.concatenate(timing).astype(np.int64)  # the timing tokens, in `_toward_native`'s order
        self._bar_and_pitch_classes = np.concatenate([[self.tail_class], np.zeros(len(self.pitch_ids), dtype=int)])
        self._p: tuple[np.ndarray | None, np.ndarray, np.ndarray] = (None, np.zeros(0), np.zeros(0))
        self._compiled = native.LIB is not None and self.tail_class < native.MAX_CLASSES
        self.take_addresses()
        gaps, last, state = [], None, GrammarState()
        for token in prompt_ids:
            onset = self._onset(state, int(token))
            if onset is not None:
                gaps += [] if last is None else [self._bin(onset - last)]
                last = onset
            state = state.advance(grammar, int(token))
        self.histogram.fill(gaps)
        self.last = [last] * rows  # absolute grid position of each row's latest onset

    def take_addresses(self) -> None:
        """The compiled calls' arguments: fixed ones, and where `_p`'s arrays start and their row stride."""
        self._gap_fixed = (self.bin_of.ctypes.data, self.log_width.ctypes.data, self.longest + 1)
        self._fixed = () if not self._compiled else (
            native.address(self.ids), len(self.positions), len(self.pitch_ids), native.address(self.positions),
            native.address(self.bin_of), self.longest, self.per_bar, self.tail_class, self.strength)
        per_gap, tail = self._p[1:]
        self._rows_at = (per_gap.ctypes.data, tail.ctypes.data, per_gap.strides[0])

    def _onset(self, before: GrammarState, token: int) -> int | None:
        """The absolute grid position a pitch token strikes at (None for other tokens)."""
        if self.kind[token] != "Pitch":
            return None
        return (before.bars - 1) * self.per_bar + max(before.position, 0)

    def _bin(self, gap: int) -> int:
        return int(self.bin_of[min(max(gap, 0), self.longest)])

    def played(self, row: int, token: int, before: GrammarState) -> None:
        """Count the gap a row's new note makes (`before`: the row's grammar state before `token`)."""
        onset = self._onset(before, token)
        if onset is None:
            return
        if self.last[row] is not None:
            self.histogram.add(row, self._bin(onset - self.last[row]))
        self.last[row] = onset

    def class_p(self) -> tuple[np.ndarray, np.ndarray]:
        """Per row, p(gap) [B, longest + 1] (a bin's mass spread evenly over its gaps) and
        p(gap >= g); kept until a row plays a note."""
        log_p = self.histogram.log_p()
        if self._p[0] is not log_p:
            self._p = (log_p, *(self._compiled_tables(log_p) if native.LIB is not None else self._tables(log_p)))
            self.take_addresses()
        return self._p[1], self._p[2]

    def _tables(self, log_p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        per_gap = np.exp(log_p[:, self.bin_of] - self.log_width)
        return per_gap, np.cumsum(per_gap[:, ::-1], -1)[:, ::-1]

    def _compiled_tables(self, log_p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`_tables` by the compiled `gap_tables`, one call a row (C-contiguous rows, as it reads them)."""
        per_gap, tail = np.empty((len(log_p), self.longest + 1)), np.empty((len(log_p), self.longest + 1))
        for r in range(len(log_p)):
            at = [a.ctypes.data + a.strides[0] * r for a in (log_p, per_gap, tail)]
            native.LIB.gap_tables(at[0], *self._gap_fixed, at[1], at[2])
        return per_gap, tail

    def apply(self, logits: np.ndarray, allowed: np.ndarray, states: list[GrammarState]) -> None:
        """Lean each row's timing decision [B, V] toward its gaps, in place."""
        compiled = self._fixed and native.reads(logits, allowed)
        for row, state in enumerate(states):
            if state.state in TIMING_STATES and self.last[row] is not None:
                if compiled:
                    self._toward_native(row, state, logits[row], allowed[row])
                    continue
                ok = allowed[row, self.ids]
                if ok.any():  # else only the end may come: nothing to lean
                    logits[row, self.ids] = self._toward(row, state, logits[row, self.ids], ok)

    def _toward_native(self, row: int, state: GrammarState, logits: np.ndarray, allowed: np.ndarray) -> None:
        """`_toward` on one row's logits [V] in place, compiled (comagen.native)."""
        self.class_p()
        per_gap, tail, stride = self._rows_at
        since = (state.bars - 1) * self.per_bar - self.last[row]
        native.LIB.lean_timing(logits.ctypes.data, allowed.ctypes.data, per_gap + row * stride, tail + row * stride,
                               since, *self._fixed)

    def _toward(self, row: int, state: GrammarState, logits: np.ndarray, allowed: np.ndarray) -> np.ndarray:
        """The timing tokens' logits leaned by `strength` x log(q/m) of their gap class, q the prior's
        share of the allowed gaps in each class, m the model's (strength 1 moves the model's mass per
        class all the way to the prior's, keeping its own preferences inside a class), shifted so the
        allowed ones keep their total probability. A position leads to one gap, a bar line to every
        gap past this bar (the tail), any pitch to gap 0 (a chord). Per class, not per token: the
        leaned mass is the model's class mass times the class's factor."""
        per_gap, tail = (a[row] for a in self.class_p())
        since = (state.bars - 1) * self.per_bar - self.last[row]  # bar start - last onset
        gaps = np.minimum(np.maximum(since + self.positions, 0), self.longest)
        classes = np.concatenate([self.bin_of[gaps], self._bar_and_pitch_classes])
        n_positions, width = len(self.positions), self.tail_class + 1
        q = np.bincount(classes[:n_positions], per_gap[gaps] * allowed[:n_positions], width)
        q[self.tail_class] += tail[min(max(since + self.per_bar, 0), self.longest)] * allowed[n_positions]
        q[0] += per_gap[0] * allowed[n_positions + 1:].any()
        masked = np.where(allowed, logits, -np.inf)
        top = masked.max()
        m = np.bincount(classes, np.exp(masked - top), width)  # the model's mass per class (x e^-top)
        lean = self.strength * (np.log(np.maximum(q / max(q.sum(), 1e-30), 1e-30))
                                - np.log(np.maximum(m / m.sum(), 1e-30)))
        shift = np.log(m.sum() / (m * np.exp(lean)).sum())
        return masked + (lean + shift)[classes]
