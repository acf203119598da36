"""Reading MIDI safely and putting a performance on a time-exact grid.

Every entry point (training data, prompts, uploads) goes through `load_score`, so every bad file
gets the same clear error. `to_grid` rewrites a score at a fixed 120 bpm, whatever tempo map the
file had, so that token positions map to seconds exactly and decoding never drifts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import symusic

from comagen.errors import (
    CorruptMidiError,
    DrumOnlyError,
    EmptyMidiError,
    MidiTooLongError,
    NotMidiError,
)

GRID_BPM = 120.0  # every score is re-timed onto this grid: the one statement of the tempo fact
SECONDS_PER_BEAT = 60.0 / GRID_BPM
SECONDS_PER_BAR = 4 * SECONDS_PER_BEAT  # 4/4
PIANO_LOW, PIANO_HIGH = 21, 108
PLAYER_TRACK, MODEL_TRACK = "Player", "Model"  # a duet's two parts, drawn in two colours
SUSTAIN_CC = 64
DEFAULT_MAX_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_SECONDS = 3 * 3600.0


def load_score(
    source: str | Path | bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_seconds: float = DEFAULT_MAX_SECONDS,
) -> symusic.Score:
    """Parse a MIDI file (path or bytes) into one piano track (`piano`), or raise a `MidiError`."""
    score, name = _parse(source, max_bytes)
    return _checked_piano(score, name, max_seconds)


def load_original(
    source: str | Path | bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_seconds: float = DEFAULT_MAX_SECONDS,
) -> symusic.Score:
    """A MIDI file as written: every track, controller, tempo and marker in its own ticks (what new
    notes are spliced into, `comagen.music.splice`), after the same checks as `load_score`."""
    score, name = _parse(source, max_bytes)
    _checked_piano(score, name, max_seconds)
    return score


def _parse(source: str | Path | bytes, max_bytes: int) -> tuple[symusic.Score, str]:
    """The parsed file and the name its errors use, or a `MidiError`."""
    name = "upload" if isinstance(source, bytes) else Path(source).name
    if isinstance(source, bytes):
        data = source
    else:
        path = Path(source)
        if not path.is_file():
            raise NotMidiError(f"{path}: no such file")
        size = path.stat().st_size
        if size > max_bytes:
            raise MidiTooLongError(f"{name}: {size / 1e6:.1f} MB is over the {max_bytes / 1e6:.0f} MB limit")
        data = path.read_bytes()
    if len(data) == 0:
        raise EmptyMidiError(f"{name}: the file is empty")
    if len(data) > max_bytes:
        raise MidiTooLongError(f"{name}: {len(data) / 1e6:.1f} MB is over the {max_bytes / 1e6:.0f} MB limit")
    if not data.startswith(b"MThd"):
        raise NotMidiError(f"{name}: not a MIDI file (it does not start with the MThd header)")
    try:
        return symusic.Score.from_midi(data), name
    except Exception as exc:  # symusic raises plain RuntimeError/ValueError on bad bytes
        raise CorruptMidiError(f"{name}: the MIDI data is corrupt ({_first_line(exc)})") from None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _checked_piano(score: symusic.Score, name: str, max_seconds: float) -> symusic.Score:
    """The score as one piano track, refused (one clear line) without pitched notes or when too long."""
    if not any(not t.is_drum and len(t.notes) > 0 for t in score.tracks):
        if any(t.is_drum and len(t.notes) > 0 for t in score.tracks):
            raise DrumOnlyError(f"{name}: only drum notes, nothing a piano can play")
        raise EmptyMidiError(f"{name}: the file has no notes")
    merged = piano(score)
    seconds = merged.to("second").end()
    if seconds > max_seconds:
        raise MidiTooLongError(f"{name}: {seconds / 60:.0f} minutes is over the {max_seconds / 60:.0f} minute limit")
    return merged


def piano(score: symusic.Score) -> symusic.Score:
    """One piano track of a score's pitched tracks (a 16-track file plays as one piano), with their
    notes and pedals and the score's tempo map; drum tracks are dropped."""
    track = symusic.Track(name="Piano", program=0, is_drum=False, ttype="tick")
    for src in score.tracks:
        if not src.is_drum and len(src.notes) > 0:
            track.notes.extend(src.notes)
            track.pedals.extend(src.pedals)
    track.sort()
    merged = symusic.Score(score.ticks_per_quarter, ttype="tick")
    merged.tempos = score.tempos
    merged.time_signatures = score.time_signatures
    merged.tracks.append(track)
    return merged


def grid_scale(ticks_per_beat: int) -> float:
    """Ticks a second of the 120 bpm grid of `ticks_per_beat`."""
    return GRID_BPM / 60.0 * ticks_per_beat


def grid_ticks(seconds: np.ndarray, ticks_per_beat: int) -> np.ndarray:
    """Times in seconds (as `Score.to("second")` gives them) on the grid, rounded as `to_grid` rounds
    onsets: the one rounding, so a splice agrees with the tokens on which bar a note is in."""
    return np.round(seconds * grid_scale(ticks_per_beat)).astype(np.int32)


def to_grid(score: symusic.Score, ticks_per_beat: int) -> symusic.Score:
    """Re-time a score onto a 120 bpm, 4/4 grid of `ticks_per_beat`, keeping seconds exact.

    Times are converted through the file's own tempo map to seconds, then to grid ticks
    (1 beat = 0.5 s), so a decoded file at 120 bpm plays at the performance's real timing.
    """
    seconds = score.to("second")
    scale = grid_scale(ticks_per_beat)
    grid = symusic.Score(ticks_per_beat, ttype="tick")
    grid.tempos.append(symusic.Tempo(0, GRID_BPM, ttype="tick"))
    grid.time_signatures.append(symusic.TimeSignature(0, 4, 4, ttype="tick"))
    for src in seconds.tracks:
        track = symusic.Track(name=src.name, program=src.program, is_drum=src.is_drum, ttype="tick")
        notes = src.notes.numpy()
        if len(notes["time"]):
            start = grid_ticks(notes["time"], ticks_per_beat)
            end = np.round((notes["time"] + notes["duration"]) * scale).astype(np.int32)
            track.notes = symusic.Note.from_numpy(
                time=start,
                duration=np.maximum(end - start, 1).astype(np.int32),
                pitch=notes["pitch"],
                velocity=notes["velocity"],
                ttype="tick",
            )
        for pedal in src.pedals:
            start = round(pedal.time * scale)
            end = round((pedal.time + pedal.duration) * scale)
            track.pedals.append(symusic.Pedal(start, max(end - start, 1), ttype="tick"))
        grid.tracks.append(track)
    return grid


def fold_sustain(score: symusic.Score) -> symusic.Score:
    """Extend each note held by the sustain pedal to the pedal's release, then drop the pedals.

    A re-struck pitch cuts the ringing note at the new onset, as a real damper would. The result
    sounds pedalled on any synth without modelling pedal events.
    """
    out = score.copy()
    for track in out.tracks:
        notes = track.notes.numpy()
        if len(notes["time"]) == 0 or len(track.pedals) == 0:
            track.pedals.clear()
            continue
        ped = track.pedals.numpy()
        p_start = ped["time"].astype(np.int64)
        p_end = p_start + ped["duration"].astype(np.int64)
        order = np.argsort(p_start, kind="stable")
        p_start, p_end = p_start[order], p_end[order]
        start = notes["time"].astype(np.int64)
        end = start + notes["duration"].astype(np.int64)
        idx = np.searchsorted(p_start, end, side="right") - 1
        held = (idx >= 0) & (end < p_end[np.maximum(idx, 0)])
        end = np.where(held, np.maximum(end, p_end[np.maximum(idx, 0)]), end)
        cut = restruck_ends(start, end, notes["pitch"].astype(np.int64))
        track.notes = symusic.Note.from_numpy(
            time=start.astype(np.int32),
            duration=np.maximum(cut - start, 1).astype(np.int32),
            pitch=notes["pitch"],
            velocity=notes["velocity"],
            ttype="tick",
        )
        track.pedals.clear()
    return out


def restruck_ends(start: np.ndarray, end: np.ndarray, pitch: np.ndarray) -> np.ndarray:
    """Each note's end cut where its key is struck again, as a damper would (notes struck together
    are left be): one channel can then hold the notes without two of one key overlapping, which a
    MIDI file cannot tell apart."""
    by_pitch = np.lexsort((start, pitch))
    nxt = np.full(len(start), np.iinfo(np.int64).max)
    same = pitch[by_pitch][1:] == pitch[by_pitch][:-1]
    nxt[by_pitch[:-1][same]] = start[by_pitch[1:][same]]
    return np.where(nxt > start, np.minimum(end, nxt), end)


def pedals_to_controls(score: symusic.Score) -> symusic.Score:
    """Write each track's sustain pedals as CC64 on/off, because `dump_midi` ignores `pedals`; a track
    that carries its own CC64 events (a file's, kept by a splice) is written as it is."""
    out = score.copy()
    for track in out.tracks:
        if np.any(track.controls.numpy()["number"] == SUSTAIN_CC):
            continue
        for pedal in track.pedals:
            track.controls.append(symusic.ControlChange(pedal.time, SUSTAIN_CC, 127, ttype="tick"))
            track.controls.append(symusic.ControlChange(pedal.time + pedal.duration, SUSTAIN_CC, 0, ttype="tick"))
        track.controls.sort()
    return out


def midi_bytes(score: symusic.Score) -> bytes:
    """Serialise a score to Standard MIDI File bytes, pedals included."""
    return pedals_to_controls(score).dumps_midi()
