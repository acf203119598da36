"""Spectrogram of an audio prompt and its continuation: one figure, the split marked as on the piano roll.

Built on a bare ``matplotlib.figure.Figure`` with the Agg canvas (no pyplot), like the piano roll, so a
server can draw it from any thread.
"""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from comagen.render.pianoroll import CONTINUATION_COLOUR, PROMPT_COLOUR

WINDOW_SECONDS = 0.046  # ~2,048 samples at 44.1 kHz: a piano's partials resolved, beats still visible
FLOOR_DB = -80.0  # quieter than this (below the loudest bin) is drawn as silence
TOP_HZ = 8000.0  # piano energy above this is slight, and the codec stops at 4 kHz at 120 bpm


def log_spectrogram(samples: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frame times (s), frequencies (Hz) and magnitude in dB below the peak [freqs, frames] of mono `samples`."""
    size = 1 << int(np.ceil(np.log2(max(WINDOW_SECONDS * rate, 16))))
    hop = size // 4
    padded = np.pad(np.asarray(samples, np.float32), (size // 2, size // 2))
    frames = max(1 + (len(padded) - size) // hop, 1)
    padded = np.pad(padded, (0, max(size - len(padded), 0)))
    index = np.arange(size)[None, :] + hop * np.arange(frames)[:, None]
    magnitude = np.abs(np.fft.rfft(padded[index] * np.hanning(size), axis=1)).T
    db = 20 * np.log10(np.maximum(magnitude, 1e-10))
    db = np.maximum(db - db.max(), FLOOR_DB)
    return np.arange(frames) * hop / rate, np.fft.rfftfreq(size, 1.0 / rate), db


def spectrogram_figure(prompt: np.ndarray, continuation: np.ndarray, rate: int, title: str = "",
                       size: tuple[float, float] = (12.0, 4.0)) -> Figure:
    """Prompt then continuation (mono samples at `rate`) as one spectrogram, a dashed line where the
    continuation starts and a bar under each part in the roll's colours (blue prompt, orange new)."""
    audio = np.concatenate((np.asarray(prompt, np.float32).reshape(-1), np.asarray(continuation, np.float32)
                            .reshape(-1)))
    times, freqs, db = log_spectrogram(audio, rate)
    split, end = len(prompt) / rate, len(audio) / rate
    fig = Figure(figsize=size, dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    shown = freqs <= min(TOP_HZ, rate / 2)
    image = ax.pcolormesh(times, freqs[shown], db[shown], shading="nearest", cmap="magma", vmin=FLOOR_DB, vmax=0,
                          rasterized=True)
    fig.colorbar(image, ax=ax, label="dB below peak", pad=0.01)
    ax.axvline(split, color="white", ls="--", lw=1.2)
    for start, stop, colour, name in ((0.0, split, PROMPT_COLOUR, "prompt"),
                                      (split, end, CONTINUATION_COLOUR, "continuation")):
        if stop > start:
            ax.axvspan(start, stop, ymin=0.0, ymax=0.03, color=colour, label=name)
    ax.set(title=title, xlabel="time (s)", ylabel="frequency (Hz)", xlim=(0.0, max(end, 1e-3)))
    ax.legend(loc="upper right", fontsize=8)
    return fig
