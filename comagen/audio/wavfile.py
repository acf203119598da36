"""Reading a user's WAV for beat alignment: refused by its header (length, channels) before any sample is read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile

from comagen.errors import AudioError

MAX_SECONDS = 3600.0
MAX_CHANNELS = 2


def read_wav(path: Path, max_seconds: float = MAX_SECONDS) -> tuple[np.ndarray, int]:
    """Samples (n x channels, float32) and rate; an empty, foreign, too long or many-channel file is one line.
    The app passes a shorter `max_seconds` than the command line: a shared server holds the samples."""
    name = Path(path).name
    try:
        info = soundfile.info(str(path))
    except (RuntimeError, soundfile.LibsndfileError) as exc:
        raise AudioError(f"{name}: not a readable WAV file ({str(exc).splitlines()[0]})") from None
    if info.frames == 0:
        raise AudioError(f"{name}: the WAV holds no audio")
    seconds = info.frames / info.samplerate
    if seconds > max_seconds:
        length = f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds:.0f} s"
        raise AudioError(f"{name}: {length} is longer than the {_duration(max_seconds)} accepted")
    if info.channels > MAX_CHANNELS:
        raise AudioError(f"{name}: {info.channels} channels; mono or stereo is supported")
    samples, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    return samples, rate


def _duration(seconds: float) -> str:
    """1 h, or 600 s: a limit as the user would say it."""
    return f"{seconds / 3600:g} h" if seconds >= 3600 else f"{seconds:g} s"
