"""Reading a user's WAV for beat alignment: refused by its header (length, channels) before any sample is read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile

from comagen.errors import AudioError

MAX_SECONDS = 3600.0
MAX_CHANNELS = 2


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """Samples (n x channels, float32) and rate; an empty, foreign, too long or many-channel file is one line."""
    name = Path(path).name
    try:
        info = soundfile.info(str(path))
    except (RuntimeError, soundfile.LibsndfileError) as exc:
        raise AudioError(f"{name}: not a readable WAV file ({str(exc).splitlines()[0]})") from None
    if info.frames == 0:
        raise AudioError(f"{name}: the WAV holds no audio")
    if info.frames / info.samplerate > MAX_SECONDS:
        raise AudioError(f"{name}: {info.frames / info.samplerate / 3600:.1f} h is longer than the "
                         f"{MAX_SECONDS / 3600:g} h accepted")
    if info.channels > MAX_CHANNELS:
        raise AudioError(f"{name}: {info.channels} channels; mono or stereo is supported")
    samples, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    return samples, rate
