"""WAV samples <-> beat-aligned blocks: each beat resampled (soxr) to a fixed length and back to its own length."""

from __future__ import annotations

import numpy as np
import soxr

from comagen.audio.beatfile import BeatAudio
from comagen.errors import AudioError

MIN_BPM, MAX_BPM = 20.0, 400.0
# 32 kHz at 120 bpm: 51.6 dB round trip on real renders, 0.92 GB/hour; 40,000 adds 2.5 dB for 2.5x the bytes
# (bench/beat_audio.py, docs/results.md "Beat-aligned audio").
DEFAULT_SAMPLES_PER_BEAT = 16000


def beat_grid(duration_s: float, bpm: float) -> np.ndarray:
    """Beat boundaries in seconds for a steady tempo, the last partial beat dropped."""
    if not MIN_BPM <= bpm <= MAX_BPM:
        raise AudioError(f"BPM {bpm:g} is outside {MIN_BPM:g}-{MAX_BPM:g}")
    beats = int(duration_s * bpm / 60.0)
    return np.arange(beats + 1) * 60.0 / bpm


def _fit(block: np.ndarray, length: int) -> np.ndarray:
    """Resample one block (samples x channels) to exactly length samples."""
    out = soxr.resample(block, len(block), length, quality="HQ") if len(block) != length else block
    if len(out) < length:
        out = np.pad(out, ((0, length - len(out)), (0, 0)))
    return out[:length]


def to_beats(samples: np.ndarray, rate: int, beat_times: np.ndarray, samples_per_beat: int) -> BeatAudio:
    """Cut samples (n x channels) at the beat boundaries and resample each beat to samples_per_beat."""
    edges = np.round(np.asarray(beat_times) * rate).astype(int)
    blocks = [_fit(samples[a:b], samples_per_beat) for a, b in zip(edges[:-1], edges[1:], strict=True)]
    return BeatAudio(np.stack(blocks).astype(np.float32), np.asarray(beat_times, float), rate)


def from_beats(audio: BeatAudio) -> np.ndarray:
    """Resample each block back to its original beat's length; returns samples x channels at the original rate."""
    edges = np.round(audio.beat_times * audio.sample_rate).astype(int)
    lengths = np.diff(edges)
    parts = [_fit(block, int(n)) for block, n in zip(audio.blocks, lengths, strict=True)]
    return np.concatenate(parts).astype(np.float32)
