"""The beat-aligned file format: a header, then one fixed-length float32 block per beat.

Layout (little-endian):
  magic b"CMGBEAT\\0" (8 bytes), version u16, samples_per_beat u32, sample format u8 (1 = float32),
  channels u16, original sample rate u32, beat count u32, then beat_count + 1 float64 beat times in seconds
  of the original (the boundaries of every beat), then beat_count * samples_per_beat * channels float32
  samples, beat after beat, channels interleaved. Storing the original boundaries lets the audio go back
  to its own tempo.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from comagen.errors import AudioError

MAGIC = b"CMGBEAT\0"
VERSION = 1
FLOAT32 = 1
_HEAD = struct.Struct("<8sHIBHII")


@dataclass(frozen=True)
class BeatAudio:
    """Beats x samples_per_beat x channels, with the original beat boundaries (seconds) and sample rate."""

    blocks: np.ndarray
    beat_times: np.ndarray
    sample_rate: int

    @property
    def samples_per_beat(self) -> int:
        return int(self.blocks.shape[1])


def write_beats(path: Path, audio: BeatAudio) -> None:
    """Write to a temporary name and rename, so a killed writer never leaves a half file under the real name."""
    beats, spb, channels = audio.blocks.shape
    head = _HEAD.pack(MAGIC, VERSION, spb, FLOAT32, channels, audio.sample_rate, beats)
    tmp = Path(path).with_name(Path(path).name + ".part")
    with open(tmp, "wb") as out:
        out.write(head)
        out.write(np.asarray(audio.beat_times, "<f8").tobytes())
        out.write(np.asarray(audio.blocks, "<f4").tobytes())
    tmp.replace(path)


def read_beats(path: Path) -> BeatAudio:
    """Read a beat-aligned file; a wrong magic, version or length is one AudioError line."""
    data = Path(path).read_bytes()
    if len(data) < _HEAD.size or data[:8] != MAGIC:
        raise AudioError(f"{Path(path).name}: not a beat-aligned audio file")
    _, version, spb, fmt, channels, rate, beats = _HEAD.unpack_from(data)
    if version != VERSION or fmt != FLOAT32:
        raise AudioError(f"{Path(path).name}: unsupported version {version} or sample format {fmt}")
    times_end = _HEAD.size + 8 * (beats + 1)
    if len(data) != times_end + 4 * beats * spb * channels:
        raise AudioError(f"{Path(path).name}: truncated or padded beat-aligned file")
    times = np.frombuffer(data, "<f8", beats + 1, _HEAD.size).copy()
    blocks = np.frombuffer(data, "<f4", offset=times_end).reshape(beats, spb, channels).copy()
    return BeatAudio(blocks, times, rate)
