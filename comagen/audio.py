"""Audio preview of a score through the real FluidSynth library (pyfluidsynth).

FluidSynth is a system library that a pip install cannot provide, so it is imported only when a
render is asked for: importing this module always works, and a missing library becomes one
clear ``AudioUnavailableError`` that the app can show while still returning MIDI and the roll.
"""

from __future__ import annotations

import io
import wave
from pathlib import Path
from types import ModuleType

import numpy as np
import symusic

from comagen.errors import ComagenError
from comagen.soundfont import find_soundfont

SUSTAIN_CC = 64
DRUM_CHANNEL = 9
# FluidSynth's master gain: low enough that dense MAESTRO chords do not clip its int16 output.
SYNTH_GAIN = 0.4
PEAK = 0.9  # normalised peak level of the returned samples
FADE_SECONDS = 0.05  # fade at the very end so a still-ringing note does not click
MIN_NOTE_SECONDS = 0.01  # a zero-length note still sounds (and its note-off follows its note-on)

# Event kinds, in the order they are applied when they fall on the same instant: releases first,
# so a repeated key is re-struck, then controllers, then new notes.
_NOTE_OFF, _CONTROL, _NOTE_ON = 0, 1, 2


class AudioUnavailableError(ComagenError):
    """The FluidSynth system library is missing, so no audio preview can be made."""


def _load_fluidsynth() -> ModuleType:
    """Import pyfluidsynth, turning a missing system library into a user-facing error."""
    try:
        import fluidsynth
    except (ImportError, OSError) as error:
        raise AudioUnavailableError(
            "Audio preview needs the FluidSynth system library: install it with "
            "`apt-get install libfluidsynth3` (on a Hugging Face Space, list libfluidsynth3 in "
            f"packages.txt) and `pip install pyfluidsynth`. ({error})"
        ) from error
    return fluidsynth


def _track_events(track: symusic.core.TrackSecond, channel: int) -> np.ndarray:
    """Rows of (time, kind, channel, a, b) for one track, times in seconds.

    Sustain comes from CC64 in ``controls`` when present (what MIDI files and our own dumps
    carry); otherwise from ``track.pedals``, which symusic builds but never writes back.
    """
    notes = track.notes.numpy()
    ons = np.stack(
        [notes["time"], np.full(len(notes["time"]), _NOTE_ON), np.full(len(notes["time"]), channel),
         notes["pitch"], notes["velocity"]], axis=1,
    )
    offs = np.stack(
        [notes["time"] + np.maximum(notes["duration"], MIN_NOTE_SECONDS), np.full(len(notes["time"]), _NOTE_OFF),
         np.full(len(notes["time"]), channel), notes["pitch"], np.zeros(len(notes["time"]))],
        axis=1,
    )
    rows = [ons, offs]
    controls = track.controls.numpy()
    if len(controls["time"]):
        rows.append(np.stack(
            [controls["time"], np.full(len(controls["time"]), _CONTROL),
             np.full(len(controls["time"]), channel), controls["number"], controls["value"]],
            axis=1,
        ))
    if not np.any(controls["number"] == SUSTAIN_CC) and len(track.pedals):
        pedals = track.pedals.numpy()
        count = len(pedals["time"])
        downs = np.stack([pedals["time"], np.full(count, _CONTROL), np.full(count, channel),
                          np.full(count, SUSTAIN_CC), np.full(count, 127)], axis=1)
        ups = np.stack([pedals["time"] + pedals["duration"], np.full(count, _CONTROL),
                        np.full(count, channel), np.full(count, SUSTAIN_CC), np.zeros(count)],
                       axis=1)
        rows += [downs, ups]
    return np.concatenate(rows).astype(np.float64)


def render_audio(
    score: symusic.Score,
    sample_rate: int = 44100,
    soundfont: str | Path | None = None,
    tail_seconds: float = 1.0,
) -> tuple[np.ndarray, int]:
    """Render ``score`` with FluidSynth; return stereo float32 samples ``[n, 2]`` and the rate.

    Time 0 of the score is sample 0. The audio lasts until the last note-off or controller
    event plus ``tail_seconds`` of release, and is scaled to a peak of 0.9 so it never clips.
    Sustain (CC64), sostenuto and soft pedals are played as controllers, so a pedalled
    performance rings as it should. Raises ``AudioUnavailableError`` without FluidSynth and
    ``SoundfontNotFoundError`` when no soundfont can be found.
    """
    fluidsynth = _load_fluidsynth()
    soundfont_path = Path(soundfont) if soundfont is not None else find_soundfont()
    seconds = score.to("second")

    synth = fluidsynth.Synth(gain=SYNTH_GAIN, samplerate=float(sample_rate))
    try:
        sfid = synth.sfload(str(soundfont_path))
        if sfid < 0:
            raise AudioUnavailableError(f"FluidSynth could not load the soundfont {soundfont_path}.")
        melodic = (c for c in range(16) if c != DRUM_CHANNEL)
        event_blocks = []
        channels = []
        for track in seconds.tracks:
            if track.is_drum:
                channel = DRUM_CHANNEL
                synth.program_select(channel, sfid, 128, 0)
            else:
                channel = next(melodic, 15)  # beyond 15 tracks, the last channel is shared
                synth.program_select(channel, sfid, 0, int(track.program))
            channels.append(channel)
            event_blocks.append(_track_events(track, channel))
        events = np.concatenate(event_blocks) if event_blocks else np.zeros((0, 5))
        events = events[np.lexsort((events[:, 1], events[:, 0]))]

        chunks: list[np.ndarray] = []
        position = 0
        sounding: dict[tuple[int, int], int] = {}
        for time, kind, channel, a, b in events.tolist():
            target = round(time * sample_rate)
            if target > position:
                chunks.append(synth.get_samples(target - position))
                position = target
            key = (int(channel), int(a))
            if kind == _NOTE_ON:
                sounding[key] = sounding.get(key, 0) + 1
                synth.noteon(key[0], key[1], int(b))
            elif kind == _NOTE_OFF:
                # Overlapping notes of one key: FluidSynth re-strikes on the second note-on, and
                # only the last note-off may silence the key.
                sounding[key] -= 1
                if sounding[key] == 0:
                    synth.noteoff(key[0], key[1])
            else:
                synth.cc(key[0], key[1], int(b))
        for channel in channels:
            synth.cc(channel, SUSTAIN_CC, 0)
        chunks.append(synth.get_samples(round(tail_seconds * sample_rate)))
    finally:
        synth.delete()

    samples = np.concatenate(chunks).reshape(-1, 2).astype(np.float32) / 32768.0
    fade = min(len(samples), round(FADE_SECONDS * sample_rate))
    if fade:
        samples[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)[:, None]
    peak = float(np.abs(samples).max()) if len(samples) else 0.0
    if peak > 0:
        samples *= PEAK / peak
    return samples, sample_rate


def wav_bytes(samples: np.ndarray, sample_rate: int) -> bytes:
    """Encode float samples (``[n]`` mono or ``[n, channels]``) as a 16-bit PCM WAV file."""
    pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1 if pcm.ndim == 1 else pcm.shape[1])
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(pcm.tobytes())
    return buffer.getvalue()
