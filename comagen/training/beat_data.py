"""Beat-aligned renders (training/render_audio.py) as training streams: each file one mono waveform at the
codec's own samples per beat, and seeded crops of whole beats (or of codes), so batch k is the same after a
resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soxr
import torch

from comagen.audio.beatfile import read_beats
from comagen.errors import ConfigError


def beat_files(folder: str | Path, split: str, limit: int = 0) -> list[Path]:
    """`folder/split/*.beats`, sorted; none is one clear line."""
    files = sorted((Path(folder) / split).glob("*.beats"))[: limit or None]
    if not files:
        raise ConfigError(f"{Path(folder) / split}: no .beats files (render them with training/render_audio.py)")
    return files


def load_stream(file: Path, samples_per_beat: int) -> np.ndarray:
    """One file as a mono float32 waveform of beats * samples_per_beat (each beat resampled as a whole file:
    the blocks are all one length, so a plain rate change keeps every beat boundary on a sample)."""
    audio = read_beats(file)
    mono = audio.blocks.mean(axis=2).reshape(-1)
    beats = len(audio.blocks)
    if audio.samples_per_beat != samples_per_beat:
        mono = soxr.resample(mono, audio.samples_per_beat, samples_per_beat, quality="HQ")
        mono = np.pad(mono, (0, max(0, beats * samples_per_beat - len(mono))))
    return np.ascontiguousarray(mono[: beats * samples_per_beat], dtype=np.float32)


class Crops:
    """Seeded crops of `length` items from a list of 1-D streams (waveforms or code sequences)."""

    def __init__(self, streams: list[np.ndarray], length: int, seed: int, unit: int = 1) -> None:
        self.streams = [s for s in streams if len(s) >= length]
        if not self.streams:
            raise ConfigError(f"no training stream is {length} items long; shorten seq_len")
        self.length, self.seed, self.unit = length, seed, unit

    def batch(self, step: int, size: int) -> torch.Tensor:
        """Batch `step`: `size` crops starting on a multiple of `unit` (a beat), the same for the same step."""
        rng = np.random.default_rng((self.seed, step))
        rows = []
        for _ in range(size):
            stream = self.streams[rng.integers(len(self.streams))]
            start = rng.integers((len(stream) - self.length) // self.unit + 1) * self.unit
            rows.append(stream[start:start + self.length])
        return torch.from_numpy(np.stack(rows))
