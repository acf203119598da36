"""Piano-roll frames: a score as which of the 128 keys sound in each fixed time step, and back.

Frames sit on the same 120 bpm grid as the tokens (`midi.to_grid`), one frame per
1/`frames_per_beat` beat, so a frame index is an exact time in seconds. Sustain is folded into the
notes first (`midi.fold_sustain`), as for the tokens, so the frames sound pedalled.

What 128 held keys cannot say: velocity (decoded notes get one fixed velocity) and a key struck
again while it still sounds (two notes become one run). `restrike="gap"` (the default) keeps such
notes apart by ending the first one a frame early, which the held-key frames can then hold; a
re-strike one frame after the onset still merges. `restrike="merge"` is the plain reference design;
`onsets=True` in `score_to_frames` also returns an onset channel that `frames_to_score` uses to
split runs exactly (measured in `bench/frames.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import symusic

from comagen.errors import ConfigError
from comagen.music.midi import GRID_BPM, PIANO_HIGH, PIANO_LOW, SECONDS_PER_BEAT, fold_sustain, to_grid

KEYS = 128
DECODE_VELOCITY = 72  # frames carry no velocity: every decoded note is played at this one


@dataclass(frozen=True)
class FrameSettings:
    """How a score becomes frames: the frame length and how re-struck keys are kept apart."""

    frames_per_beat: int = 8
    restrike: str = "gap"  # "gap" (end a note a frame early when its key is struck again) or "merge"

    def __post_init__(self) -> None:
        if not isinstance(self.frames_per_beat, int) or self.frames_per_beat < 1:
            raise ConfigError(f"frames_per_beat must be a positive integer, not {self.frames_per_beat!r}")
        if self.restrike not in ("gap", "merge"):
            raise ConfigError(f"restrike must be 'gap' or 'merge', not {self.restrike!r}")

    @property
    def seconds_per_frame(self) -> float:
        return SECONDS_PER_BEAT / self.frames_per_beat

    @property
    def frames_per_second(self) -> float:
        return 1.0 / self.seconds_per_frame


def note_spans(score: symusic.Score, settings: FrameSettings) -> np.ndarray:
    """The notes of a loaded score as rows (pitch, first frame, end frame), sustain folded, on the
    frame grid, with re-struck keys handled as `settings.restrike` says. Compact: a training set
    keeps these and fills frames per crop."""
    grid = fold_sustain(to_grid(score, settings.frames_per_beat))
    rows = [_track_spans(t.notes.numpy(), settings.restrike) for t in grid.tracks if len(t.notes)]
    if not rows:
        return np.zeros((0, 3), dtype=np.int32)
    spans = np.concatenate(rows)
    return spans[np.lexsort((spans[:, 0], spans[:, 1]))]


def _track_spans(notes: dict[str, np.ndarray], restrike: str) -> np.ndarray:
    start = notes["time"].astype(np.int64)
    end = start + np.maximum(notes["duration"].astype(np.int64), 1)
    pitch = notes["pitch"].astype(np.int64)
    if restrike == "gap":
        order = np.lexsort((start, pitch))
        p, s, e = pitch[order], start[order], end[order]
        again = (p[1:] == p[:-1]) & (s[1:] <= e[:-1]) & (s[1:] > s[:-1])
        shorten = np.zeros(len(order), dtype=bool)
        shorten[:-1] = again
        cut = np.maximum(np.minimum(e, np.append(s[1:], 0)) - 1, s + 1)
        end[order] = np.where(shorten, cut, e)
    return np.stack((pitch, start, end), axis=1).astype(np.int32)


def spans_to_frames(spans: np.ndarray, start: int, length: int) -> np.ndarray:
    """Frames [length, 128] (uint8: 1 = key sounds) of frames start .. start+length-1."""
    frames = np.zeros((length, KEYS), dtype=np.uint8)
    lo = np.clip(spans[:, 1] - start, 0, length)
    hi = np.clip(spans[:, 2] - start, 0, length)
    for pitch, a, b in zip(spans[:, 0], lo, hi, strict=True):
        if b > a:
            frames[a:b, pitch] = 1
    return frames


def score_to_frames(score: symusic.Score, settings: FrameSettings,
                    onsets: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Frames [T, 128] of a whole loaded score (T: up to its last note's end); with `onsets` also
    [T, 128] marking each note's first frame."""
    spans = note_spans(score, settings)
    total = int(spans[:, 2].max()) if len(spans) else 0
    frames = spans_to_frames(spans, 0, total)
    if not onsets:
        return frames
    marks = np.zeros_like(frames)
    marks[spans[:, 1], spans[:, 0]] = 1
    return frames, marks


def frames_to_score(frames: np.ndarray, settings: FrameSettings, onsets: np.ndarray | None = None,
                    velocity: int = DECODE_VELOCITY) -> symusic.Score:
    """A playable score (120 bpm, one tick per frame) from frames [T, 128]: each run of held frames
    of a key is one note; an onset mark inside a run starts a new note."""
    held = np.asarray(frames, dtype=bool)
    padded = np.pad(held, ((1, 1), (0, 0)))
    rise = padded[1:] & ~padded[:-1]
    if onsets is not None:
        rise[:-1] |= held & np.asarray(onsets, dtype=bool)
    fall = ~padded[1:] & padded[:-1]
    starts, pitches, ends = [], [], []
    for key in np.flatnonzero(held.any(axis=0)):
        on = np.flatnonzero(rise[:, key])
        off = np.flatnonzero(fall[:, key])
        stop = off[np.searchsorted(off, on, side="right")]
        stop = np.minimum(stop, np.append(on[1:], held.shape[0]))
        starts.append(on)
        ends.append(stop)
        pitches.append(np.full(len(on), key))
    return _score(np.concatenate(starts or [np.zeros(0)]), np.concatenate(ends or [np.zeros(0)]),
                  np.concatenate(pitches or [np.zeros(0)]), settings, velocity)


def _score(start: np.ndarray, end: np.ndarray, pitch: np.ndarray, settings: FrameSettings,
           velocity: int) -> symusic.Score:
    score = symusic.Score(settings.frames_per_beat, ttype="tick")
    score.tempos.append(symusic.Tempo(0, GRID_BPM, ttype="tick"))
    score.time_signatures.append(symusic.TimeSignature(0, 4, 4, ttype="tick"))
    track = symusic.Track(name="Piano", program=0, is_drum=False, ttype="tick")
    if len(start):
        order = np.lexsort((pitch, start))
        track.notes = symusic.Note.from_numpy(
            time=start[order].astype(np.int32), duration=(end - start)[order].astype(np.int32),
            pitch=pitch[order].astype(np.int8), velocity=np.full(len(start), velocity, dtype=np.int8),
            ttype="tick")
    score.tracks.append(track)
    return score


def piano_key_mask() -> np.ndarray:
    """True for the 88 keys a piano has (21..108): the frames' grammar."""
    mask = np.zeros(KEYS, dtype=bool)
    mask[PIANO_LOW:PIANO_HIGH + 1] = True
    return mask
