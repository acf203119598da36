"""Audio preview of a score through the real FluidSynth library (pyfluidsynth).

FluidSynth is a system library that a pip install cannot provide, so it is imported only when a
render is asked for: importing this module always works, and a missing library becomes one
clear ``AudioUnavailableError`` that the app can show while still returning MIDI and the roll.
"""

from __future__ import annotations

import io
import wave
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import symusic

from comagen.errors import ComagenError
from comagen.render.soundfont import find_soundfont

SUSTAIN_CC = 64
DRUM_CHANNEL = 9
# FluidSynth's master gain: low enough that dense MAESTRO chords do not clip its int16 output.
SYNTH_GAIN = 0.4
PEAK = 0.9  # normalised peak level of the returned samples
FADE_SECONDS = 0.05  # fade at the very end so a still-ringing note does not click
MIN_NOTE_SECONDS = 0.01  # a zero-length note still sounds (and its note-off follows its note-on)
BLOCK_FRAMES = 1 << 16  # frames turned into floats at a time when writing a WAV (0.5 MB)

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
    ``SoundfontNotFoundError`` when no soundfont can be found. For long pieces prefer
    `render_wav`, which never holds the float copy (21 MB a minute).
    """
    pcm = _synthesize(score, sample_rate, soundfont, tail_seconds)
    samples = np.empty(pcm.shape, np.float32)
    for start, block in _faded_blocks(pcm, sample_rate):
        samples[start:start + len(block)] = block
    peak = float(np.abs(samples).max()) if len(samples) else 0.0
    if peak > 0:
        samples *= PEAK / peak
    return samples, sample_rate


def render_wav(
    score: symusic.Score,
    path: str | Path,
    sample_rate: int = 44100,
    soundfont: str | Path | None = None,
    tail_seconds: float = 1.0,
) -> Path:
    """Write the audio of `render_audio` as the 16-bit WAV `wav_bytes` would make of it, block by
    block, so the peak memory is FluidSynth's own 16-bit output (10.6 MB a minute) instead of that
    plus several float copies: what keeps a ten-minute render from costing ~1 GB."""
    pcm = _synthesize(score, sample_rate, soundfont, tail_seconds)
    peak = max((float(np.abs(block).max()) for _, block in _faded_blocks(pcm, sample_rate)), default=0.0)
    path = Path(path)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        for _, block in _faded_blocks(pcm, sample_rate):
            if peak > 0:
                block *= PEAK / peak
            wav.writeframes(_pcm16(block).tobytes())
    return path


def _faded_blocks(pcm: np.ndarray, sample_rate: int) -> Iterator[tuple[int, np.ndarray]]:
    """(first frame, float32 block) over 16-bit frames [n, 2], with the end fade applied: the
    float form of a long render exists one block at a time."""
    fade = min(len(pcm), round(FADE_SECONDS * sample_rate))
    ramp = np.linspace(1.0, 0.0, fade, dtype=np.float32)[:, None]
    fade_from = len(pcm) - fade
    for start in range(0, len(pcm), BLOCK_FRAMES):
        block = pcm[start:start + BLOCK_FRAMES].astype(np.float32) / 32768.0
        first = max(fade_from - start, 0)
        if first < len(block):
            block[first:] *= ramp[start + first - fade_from:start + len(block) - fade_from]
        yield start, block


def _synthesize(score: symusic.Score, sample_rate: int, soundfont: str | Path | None,
                tail_seconds: float) -> np.ndarray:
    """FluidSynth's 16-bit stereo output [n, 2] of `score`, written into one buffer sized up front
    (no list of chunks to join, which doubled the peak)."""
    fluidsynth = _load_fluidsynth()
    soundfont_path = Path(soundfont) if soundfont is not None else find_soundfont()
    synth = fluidsynth.Synth(gain=SYNTH_GAIN, samplerate=float(sample_rate))
    try:
        sfid = synth.sfload(str(soundfont_path))
        if sfid < 0:
            raise AudioUnavailableError(f"FluidSynth could not load the soundfont {soundfont_path}.")
        events, channels = _score_events(synth, sfid, score.to("second"))
        last = round(events[-1, 0] * sample_rate) if len(events) else 0
        out = np.zeros((last + round(tail_seconds * sample_rate), 2), np.int16)
        position = 0
        sounding: dict[tuple[int, int], int] = {}
        for time, kind, channel, a, b in events.tolist():
            target = round(time * sample_rate)
            if target > position:
                out[position:target] = synth.get_samples(target - position).reshape(-1, 2)
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
        if len(out) > position:
            out[position:] = synth.get_samples(len(out) - position).reshape(-1, 2)
    finally:
        synth.delete()
    return out


def _score_events(synth: object, sfid: int, seconds: symusic.Score) -> tuple[np.ndarray, list[int]]:
    """Every track on its own channel (drums on 9): the time-sorted event rows and the channels used."""
    melodic = (c for c in range(16) if c != DRUM_CHANNEL)
    event_blocks, channels = [], []
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
    return events[np.lexsort((events[:, 1], events[:, 0]))], channels


def wav_bytes(samples: np.ndarray, sample_rate: int) -> bytes:
    """Encode float samples (``[n]`` mono or ``[n, channels]``) as a 16-bit PCM WAV file."""
    pcm = _pcm16(samples)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1 if pcm.ndim == 1 else pcm.shape[1])
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(pcm.tobytes())
    return buffer.getvalue()


def _pcm16(samples: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] as little-endian 16-bit integers."""
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2")
