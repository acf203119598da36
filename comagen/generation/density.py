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

import torch

from comagen.generation.histogram import DecayedHistogram
from comagen.generation.keyprior import kept_mass
from comagen.music.grammar import AFTER_BAR, AFTER_DURATION, GrammarState, RemiGrammar

HALF_LIFE_NOTES = 128
SMOOTHING = 0.2  # per bin: a pace never heard in the prompt stays possible
MAX_GAP_BARS = 4  # gaps beyond this many bars count as the longest


def gap_edges(positions_per_bar: int) -> list[int]:
    """First gap of each bin: 0, 1, 2, 3, 5, 9, 17, ... up to the longest gap counted."""
    edges, top = [0, 1, 2], MAX_GAP_BARS * positions_per_bar
    while edges[-1] * 2 - 1 < top:
        edges.append(edges[-1] * 2 - 1)
    return [*edges, top + 1]


class DensityPrior:
    """Per-row gap histograms, each row's last onset, and the lean they give to timing decisions."""

    def __init__(self, grammar: RemiGrammar, prompt_ids: list[int], rows: int, strength: float) -> None:
        self.strength = strength
        self.per_bar = grammar.positions_per_bar
        edges = gap_edges(self.per_bar)
        self.longest = edges[-1] - 1
        widths = torch.tensor([b - a for a, b in zip(edges, edges[1:], strict=False)], dtype=torch.float)
        self.bin_of = torch.repeat_interleave(torch.arange(len(widths)), widths.long())  # gap -> bin
        self.log_width = torch.log(widths)[self.bin_of]
        self.histogram = DecayedHistogram(len(widths), rows, HALF_LIFE_NOTES, SMOOTHING)
        self.tail_class = len(widths)  # a bar line's class: every gap that reaches past this bar
        self.kind = grammar.kind
        self.positions = torch.nonzero(grammar.position_id >= 0).flatten()  # the bar's positions the vocab has
        self.position_ids = grammar.position_id[self.positions]
        self.pitch_ids = grammar.pitch_ids
        self.ids = torch.cat([self.position_ids, torch.tensor([grammar.bar_id]), self.pitch_ids])  # timing tokens
        gaps, last, state = [], None, GrammarState()
        for token in prompt_ids:
            onset = self._onset(state, int(token))
            if onset is not None:
                gaps += [] if last is None else [self._bin(onset - last)]
                last = onset
            state = state.advance(grammar, int(token))
        self.histogram.fill(gaps)
        self.last = [last] * rows  # absolute grid position of each row's latest onset

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

    def _class_log_p(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """log p(gap) [R, longest + 1] (a bin's mass spread evenly over its gaps) and log p(gap >= g)."""
        per_gap = self.histogram.log_p(rows)[:, self.bin_of] - self.log_width
        tail = torch.logcumsumexp(per_gap.flip(-1), -1).flip(-1)
        return per_gap, tail

    def apply(self, logits: torch.Tensor, allowed: torch.Tensor, states: list[GrammarState]) -> torch.Tensor:
        """Logits [B, V] with each timing decision leaned toward its row's gaps."""
        rows = [i for i, s in enumerate(states) if s.state in (AFTER_DURATION, AFTER_BAR) and self.last[i] is not None]
        if not rows or self.strength == 0:
            return logits
        index = torch.tensor(rows)
        per_gap, tail = self._class_log_p(index)
        since = torch.tensor([(states[i].bars - 1) * self.per_bar - self.last[i] for i in rows])  # bar start - onset
        gaps = (since[:, None] + self.positions).clamp(0, self.longest)  # each position's gap
        bar = (since + self.per_bar).clamp(0, self.longest)[:, None]  # a bar line: every gap from here on
        n_pitch = len(self.pitch_ids)
        chord = allowed[index[:, None], self.pitch_ids].sum(-1, keepdim=True).clamp_min(1)  # gap 0 shared by pitches
        prior = torch.cat([per_gap.gather(1, gaps), tail.gather(1, bar),
                           (per_gap[:, :1] - torch.log(chord.float())).expand(-1, n_pitch)], -1)
        classes = torch.cat([self.bin_of[gaps], torch.full((len(rows), 1), self.tail_class),
                             torch.zeros(len(rows), n_pitch, dtype=torch.long)], -1)
        out = logits.float().clone()
        group, ok = out[index[:, None], self.ids], allowed[index[:, None], self.ids]
        out[index[:, None], self.ids] = kept_mass(group, ok, self.strength * self._toward(group, ok, prior, classes))
        return out

    def _toward(self, logits: torch.Tensor, allowed: torch.Tensor, prior: torch.Tensor,
                classes: torch.Tensor) -> torch.Tensor:
        """Per token, log(q/m) of its class: q the prior's share of the allowed gaps in each class, m the
        model's; adding it moves the model's mass per class all the way to the prior's, keeping the
        model's own preferences inside a class."""
        model = torch.softmax(logits.masked_fill(~allowed, -torch.inf), -1)
        prior = torch.exp(prior) * allowed
        m = torch.zeros(len(logits), self.tail_class + 1).scatter_add_(1, classes, model)
        q = torch.zeros_like(m).scatter_add_(1, classes, prior)
        q = q / q.sum(-1, keepdim=True).clamp_min(1e-30)
        return (torch.log(q.clamp_min(1e-30)) - torch.log(m.clamp_min(1e-30))).gather(1, classes)
