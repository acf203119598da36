"""A per-row decayed histogram: what a stream has played lately, as smoothed log-probabilities.

The sampling leans (key, register, dynamics, density) each keep one: the prompt's notes fill it,
every note a row plays since is added, and older notes fade with a half-life in notes, so a lean
follows slow changes in the music instead of pinning it to the prompt's first bars. The counts are
numpy arrays: the leans run once a token on vectors of 12-128 values, where numpy's per-call cost is
a fraction of torch's (comagen.generation.leans).
"""

from __future__ import annotations

import numpy as np

from comagen import native


class DecayedHistogram(native.KeepsAddresses):
    """Counts over `bins` per row; each added note first multiplies the row's counts by the decay."""

    def __init__(self, bins: int, rows: int, half_life: float, smoothing: float,
                 kernel: np.ndarray | None = None) -> None:
        self.counts = np.zeros((rows, bins))
        self.decay = 0.5 ** (1.0 / half_life)
        self.smoothing = smoothing
        self.kernel = None if kernel is None else np.ascontiguousarray(kernel, np.float64)  # [bins, bins]: spreads
        # each count over neighbouring bins (None: none)
        self._log_p: np.ndarray | None = None  # all rows' log p, kept until a count changes
        self.take_addresses()

    def take_addresses(self) -> None:
        self._kernel_at = None if self.kernel is None else self.kernel.ctypes.data

    def add(self, row: int, index: int) -> None:
        self.counts[row] *= self.decay
        self.counts[row, index] += 1.0
        self._log_p = None

    def fill(self, indices: list[int]) -> None:
        """Every row starts from the same notes (a prompt's), in order."""
        one = np.zeros(self.counts.shape[1])
        for index in indices:
            one *= self.decay
            one[index] += 1.0
        self.counts[:] = one
        self._log_p = None

    def log_p(self) -> np.ndarray:
        """log p(bin) [rows, bins] from the smoothed counts; computed once per change of the counts
        (most steps, a velocity or a duration, add nothing), so a caller may cache what it derives
        from it for as long as the same array comes back. Compiled where it can be (comagen.native)."""
        if self._log_p is None:
            self._log_p = self._compiled_log_p() if native.LIB is not None else self._numpy_log_p()
        return self._log_p

    def _numpy_log_p(self) -> np.ndarray:
        counts = self.counts if self.kernel is None else self.counts @ self.kernel
        smoothed = counts + self.smoothing
        return np.log(smoothed / smoothed.sum(-1, keepdims=True))

    def _compiled_log_p(self) -> np.ndarray:
        """`_numpy_log_p` by the compiled `histogram_log_p`, one call a row."""
        out, bins = np.empty_like(self.counts), self.counts.shape[1]
        for r in range(len(out)):
            native.LIB.histogram_log_p(self.counts.ctypes.data + 8 * r * bins, self._kernel_at, bins, self.smoothing,
                                       out.ctypes.data + 8 * r * bins)
        return out


def spread(values: np.ndarray, deviation: float) -> np.ndarray:
    """A kernel [n, n] that spreads a count at each of `values` over its neighbours (Gaussian, rows sum to 1)."""
    kernel = np.exp(-0.5 * ((values[:, None] - values[None, :]) / deviation) ** 2)
    return kernel / kernel.sum(-1, keepdims=True)
