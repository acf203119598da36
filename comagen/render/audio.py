"""Audio preview of a score through the real FluidSynth library (pyfluidsynth).

FluidSynth is a system library that a pip install cannot provide, so it is imported only when a
render is asked for: importing this module always works, and a missing library becomes one
clear ``AudioUnavailableError`` that the app can show while still returning MIDI and the roll.

A General MIDI soundfont is 148 MB of samples. It is loaded once per process (`shared_soundfont`)
and lent to a fresh, light synth for each render (a few ms): a fresh synth is the only state that
FluidSynth fully resets (a reused one keeps voices in release, the reverb's modulation and its
64-frame block phase across ``system_reset``), so no render hears the one before it. Renders of one
soundfont take turns under its lock. Samples load per preset on first use (FluidSynth's dynamic
sample loading), so a piano take holds the piano's samples, not the whole General MIDI set.
"""

from __future__ import annotations

import ctypes
import functools
import io
import threading
import wave
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import soundfile
import symusic

from comagen.errors import ComagenError
from comagen.render.soundfont import find_soundfont

SUSTAIN_CC = 64
DRUM_CHANNEL = 9
# FluidSynth's master gain: low enough that dense MAESTRO chords do not clip the 16-bit buffer.
SYNTH_GAIN = 0.4
PEAK = 0.9  # normalised peak level of the returned samples
FADE_SECONDS = 0.05  # fade at the very end so a still-ringing note does not click
MIN_NOTE_SECONDS = 0.01  # a zero-length note still sounds (and its note-off follows its note-on)
BLOCK_FRAMES = 1 << 16  # frames synthesized, or turned into floats when writing, at a time (0.5 MB)
MIDI_CHANNELS = 16  # a render synth's channels: what `_score_events` uses
FLUID_WARN = 2  # FluidSynth's log level of warnings
# What the page's player gets: Ogg Vorbis, 11x smaller than the 16-bit WAV and encoded at ~80x real
# time; FLAC was 2.7x smaller, MP3 (LAME) 4.4x and 4.5x slower than Vorbis (bench/audio.py).
PLAYER_SUFFIX = ".ogg"

# Event kinds, in the order they are applied when they fall on the same instant: releases first,
# so a repeated key is re-struck, then controllers, then new notes.
_NOTE_OFF, _CONTROL, _NOTE_ON = 0, 1, 2


class AudioUnavailableError(ComagenError):
    """The FluidSynth system library is missing, so no audio preview can be made."""


def load_fluidsynth() -> ModuleType:
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


@dataclass
class SharedSoundfont:
    """A soundfont loaded once, into a silent holder synth that owns it, lent to a fresh synth per render."""

    path: Path
    holder: Any  # fluidsynth.Synth; its default programs keep the piano's and drums' samples loaded
    sfont: int  # the loaded fluid_sfont_t, by address
    lock: threading.Lock  # one render at a time plays it
    renders: int = 0  # renders it has served (the tests' proof that it was reused)


@dataclass(frozen=True)
class _Api:
    """The FluidSynth 2 calls that pyfluidsynth does not wrap."""

    write_float: Callable[..., int]
    add_sfont: Callable[..., int]
    remove_sfont: Callable[..., int]
    get_sfont_by_id: Callable[..., int]
    set_log_function: Callable[..., int | None]


_SOUNDFONTS: dict[Path, SharedSoundfont] = {}
_SOUNDFONTS_LOCK = threading.Lock()
_LOG_LOCK = threading.Lock()  # FluidSynth's log function is one for the process, whatever the soundfont


@functools.cache
def _api() -> _Api:
    """Prototypes of the unwrapped calls, through pyfluidsynth's own `cfunc` and library handle."""
    cfunc, ptr, num = load_fluidsynth().cfunc, ctypes.c_void_p, ctypes.c_int
    calls = _Api(
        cfunc("fluid_synth_write_float", num, ("synth", ptr, 1), ("len", num, 1), ("lout", ptr, 1),
              ("loff", num, 1), ("lincr", num, 1), ("rout", ptr, 1), ("roff", num, 1), ("rincr", num, 1)),
        cfunc("fluid_synth_add_sfont", num, ("synth", ptr, 1), ("sfont", ptr, 1)),
        cfunc("fluid_synth_remove_sfont", num, ("synth", ptr, 1), ("sfont", ptr, 1)),
        cfunc("fluid_synth_get_sfont_by_id", ptr, ("synth", ptr, 1), ("id", num, 1)),
        cfunc("fluid_set_log_function", ptr, ("level", num, 1), ("fun", ptr, 1), ("data", ptr, 1)),
    )
    if None in vars(calls).values():
        raise AudioUnavailableError("Audio preview needs FluidSynth 2 (libfluidsynth3); this one is older.")
    return calls


def shared_soundfont(path: Path) -> SharedSoundfont:
    """The process's one loaded copy of the soundfont at `path`, loaded on first use."""
    fluidsynth = load_fluidsynth()
    key = path.resolve()
    with _SOUNDFONTS_LOCK:
        if key not in _SOUNDFONTS:
            holder = fluidsynth.Synth(channels=MIDI_CHANNELS, **{"synth.dynamic-sample-loading": 1})
            sfid = holder.sfload(str(key))
            if sfid < 0:
                holder.delete()
                raise AudioUnavailableError(f"FluidSynth could not load the soundfont {key}.")
            _SOUNDFONTS[key] = SharedSoundfont(key, holder, _api().get_sfont_by_id(holder.synth, sfid),
                                               threading.Lock())
        return _SOUNDFONTS[key]


@contextmanager
def _lent_synth(shared: SharedSoundfont, sample_rate: int) -> Iterator[tuple[Any, int]]:
    """A fresh synth playing the shared soundfont, and the soundfont's id in it, for one render."""
    api = _api()
    with shared.lock:
        synth = load_fluidsynth().Synth(gain=SYNTH_GAIN, samplerate=float(sample_rate), channels=MIDI_CHANNELS)
        try:
            yield synth, api.add_sfont(synth.synth, shared.sfont)
        finally:
            # Taking the soundfont back (so deleting the synth does not free it) re-selects every
            # channel's program, and FluidSynth warns for each channel that none is left: expected, so quiet.
            with _LOG_LOCK:
                previous = api.set_log_function(FLUID_WARN, None, None)
                api.remove_sfont(synth.synth, shared.sfont)
                api.set_log_function(FLUID_WARN, previous, None)
            synth.delete()
            shared.renders += 1


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
    `render_files`, which never holds the float copy (21 MB a minute).
    """
    pcm = _synthesize(score, sample_rate, soundfont, tail_seconds)
    samples = np.empty(pcm.shape, np.float32)
    for start, block in _faded_blocks(pcm, sample_rate):
        samples[start:start + len(block)] = block
    peak = float(np.abs(samples).max()) if len(samples) else 0.0
    if peak > 0:
        samples *= PEAK / peak
    return samples, sample_rate


def render_files(
    score: symusic.Score,
    paths: Sequence[str | Path],
    sample_rate: int = 44100,
    soundfont: str | Path | None = None,
    tail_seconds: float = 1.0,
) -> list[Path]:
    """Write the audio of `render_audio`, synthesized once, to every path in the format its suffix
    names: ``.wav`` as the 16-bit WAV `wav_bytes` would make of it, any other suffix libsndfile knows
    (``.ogg`` Vorbis, ``.flac``, ``.mp3``) from the same 16-bit frames through soundfile. Block by
    block, so the peak memory is FluidSynth's 16-bit output (10.6 MB a minute) instead of that plus
    several float copies: what keeps a ten-minute render from costing ~1 GB."""
    pcm = _synthesize(score, sample_rate, soundfont, tail_seconds)
    peak = max((float(np.abs(block).max()) for _, block in _faded_blocks(pcm, sample_rate)), default=0.0)
    paths = [Path(path) for path in paths]
    with ExitStack() as stack:
        writers = [stack.enter_context(_writer(path, sample_rate)) for path in paths]
        for _, block in _faded_blocks(pcm, sample_rate):
            if peak > 0:
                block *= PEAK / peak
            frames = _pcm16(block)
            for write in writers:
                write(frames)
    return paths


def render_wav(
    score: symusic.Score,
    path: str | Path,
    sample_rate: int = 44100,
    soundfont: str | Path | None = None,
    tail_seconds: float = 1.0,
) -> Path:
    """`render_files` to one WAV file."""
    return render_files(score, [path], sample_rate, soundfont, tail_seconds)[0]


@contextmanager
def _writer(path: Path, sample_rate: int) -> Iterator[Callable[[np.ndarray], object]]:
    """A function that appends 16-bit stereo frames to `path`, in the format of its suffix."""
    if path.suffix.lower() == ".wav":
        with wave.open(str(path), "wb") as wav:
            wav.setnchannels(2)
            wav.setsampwidth(2)
            wav.setframerate(sample_rate)
            yield lambda frames: wav.writeframes(frames.tobytes())
    else:
        with soundfile.SoundFile(path, "w", sample_rate, 2) as sound:
            yield sound.write


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
    """FluidSynth's output of `score` as 16-bit stereo [n, 2], written into one buffer sized up front
    (no list of chunks to join, which doubled the peak)."""
    shared = shared_soundfont(Path(soundfont) if soundfont is not None else find_soundfont())
    with _lent_synth(shared, sample_rate) as (synth, sfid):
        events, channels = _score_events(synth, sfid, score.to("second"))
        last = round(events[-1, 0] * sample_rate) if len(events) else 0
        out = np.zeros((last + round(tail_seconds * sample_rate), 2), np.int16)
        scratch = np.empty((BLOCK_FRAMES, 2), np.float32)
        position = 0
        sounding: dict[tuple[int, int], int] = {}
        for time, kind, channel, a, b in events.tolist():
            target = round(time * sample_rate)
            if target > position:
                _play(synth, out[position:target], scratch)
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
        _play(synth, out[position:], scratch)
    return out


def _play(synth: Any, out: np.ndarray, scratch: np.ndarray) -> None:
    """Fill 16-bit frames `out` [n, 2] with the synth's next n frames, through the float `scratch`
    (FluidSynth's own 16-bit output dithers from a position that carries on across calls)."""
    write = _api().write_float
    for start in range(0, len(out), len(scratch)):
        block = scratch[:min(len(scratch), len(out) - start)]
        address = block.ctypes.data
        write(synth.synth, len(block), address, 0, 2, address, 1, 2)
        out[start:start + len(block)] = _pcm16(block)


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
