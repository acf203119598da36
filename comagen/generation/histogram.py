"""A per-row decayed histogram: what a stream has played lately, as smoothed log-probabilities.

The sampling leans (key, dynamics, density) each keep one: the prompt's notes fill it, every note a
row plays since is added, and older notes fade with a half-life in notes, so a lean follows slow
changes in the music instead of pinning it to the prompt's first bars.
"""

from __future__ import annotations

import torch


class DecayedHistogram:
    """Counts over `bins` per row; each added note first multiplies the row's counts by the decay."""

    def __init__(self, bins: int, rows: int, half_life: float, smoothing: float,
                 kernel: torch.Tensor | None = None) -> None:
        self.counts = torch.zeros(rows, bins)
        self.decay = 0.5 ** (1.0 / half_life)
        self.smoothing = smoothing
        self.kernel = kernel  # [bins, bins]: spreads each count over neighbouring bins (None: none)
        self._log_p: torch.Tensor | None = None  # all rows' log p, kept until a count changes

    def add(self, row: int, index: int) -> None:
        self.counts[row] *= self.decay
        self.counts[row, index] += 1.0
        self._log_p = None

    def fill(self, indices: list[int]) -> None:
        """Every row starts from the same notes (a prompt's), in order."""
        one = torch.zeros(self.counts.shape[1])
        for index in indices:
            one *= self.decay
            one[index] += 1.0
        self.counts[:] = one
        self._log_p = None

    def log_p(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        """log p(bin) [R, bins] from the smoothed counts of `rows` (all rows when None); computed once
        per change of the counts, since most steps (a velocity, a duration) add nothing."""
        if self._log_p is None:
            counts = self.counts if self.kernel is None else self.counts @ self.kernel
            smoothed = counts + self.smoothing
            self._log_p = torch.log(smoothed / smoothed.sum(-1, keepdim=True))
        return self._log_p if rows is None else self._log_p[rows]


def spread(values: torch.Tensor, deviation: float) -> torch.Tensor:
    """A kernel [n, n] that spreads a count at each of `values` over its neighbours (Gaussian, rows sum to 1)."""
    kernel = torch.exp(-0.5 * ((values[:, None] - values[None, :]) / deviation) ** 2)
    return kernel / kernel.sum(-1, keepdim=True)
