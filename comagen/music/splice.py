"""New notes put into the user's own score between two times, so an edit changes nothing else.

The model reads and writes tokens on a 120 bpm grid (`midi.to_grid`): onsets move by up to 10 ms,
velocities are binned and the sustain pedal is folded into durations, so a result written from its
tokens changes every note of the user's file. A splice keeps the original score (its ticks, tempo
map, tracks, pedals, controllers, markers) and replaces only what was regenerated:

- The original notes replaced are those whose onset falls in [start, end) on the token grid
  (`midi.grid_ticks`, the rounding the tokens were made with), so a note played a hair before a bar
  line goes with the bar the model saw it in. A note starting before the span keeps its whole
  length, even when it rings into the span.
- The new notes are placed by seconds through the original's tempo map, in a track of their own
  (`TRACK`, reused by later splices): MIDI cannot tell two overlapping notes of one pitch on one
  channel apart, so a new note in the user's track could change the length of one of theirs once
  the file is read again; and the user's pedalling stays on the user's notes (the model's carry
  their sustain in their lengths). In that track a note still sounding when its key is struck again
  is cut there (`midi.restruck_ends`), so the file read back is the score shown and played.
- With an end (an infill), pedals, controllers, lyrics, markers, tempos and time signatures are all
  kept, inside the span too: a pedal is one gesture across the span's edges, and the music after
  the span needs it. Nothing is dropped, so nothing dangles.
- Without an end (a continuation of the file's first seconds), what starts at or after the cut is
  dropped, except the tempo map and time signatures that the new notes sit in; a pedal held at the
  cut (sustain, sostenuto, soft) is kept whole up to its release, as a note held there is.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import numpy as np
import symusic

from comagen.music.midi import grid_scale, grid_ticks, restruck_ends
from comagen.music.tokenizer import PianoTokenizer

TRACK = "comagen"  # the track the new notes go in
PEDAL_CCS = (64, 66, 67)  # sustain, sostenuto, soft: down from a value of 64 until a value below it

Inside = Callable[[np.ndarray], np.ndarray]  # times in seconds -> which are replaced


def splice(original: symusic.Score, new: symusic.Score, start_s: float, end_s: float | None = None, *,
           ticks_per_beat: int) -> symusic.Score:
    """`original` with its notes starting in [start_s, end_s) (seconds, on the grid of `ticks_per_beat`
    positions a beat; to its end when `end_s` is None) replaced by every note of `new` (any time base)."""
    out = original.copy()
    seconds = original.to("second")
    low = round(start_s * grid_scale(ticks_per_beat))
    high = None if end_s is None else round(end_s * grid_scale(ticks_per_beat))

    def inside(times: np.ndarray) -> np.ndarray:
        grid = grid_ticks(np.asarray(times, np.float32), ticks_per_beat)
        return (grid >= low) & (grid < high) if high is not None else grid >= low

    for track, timed in zip(out.tracks, seconds.tracks, strict=True):
        track.notes = _notes(track.notes.numpy(), ~inside(timed.notes.numpy()["time"]))
        if high is None:
            _cut_track(track, timed, inside)
    if high is None:
        out.markers = _before(out.markers, seconds.markers, inside)
        out.key_signatures = _before(out.key_signatures, seconds.key_signatures, inside)
    _add_notes(out, _in_ticks(new, seconds, original.ticks_per_quarter))
    return out


def added_notes(tokenizer: PianoTokenizer, before: list[int], ids: list[int]) -> symusic.Score:
    """The notes that `ids` add after `before` (a prompt, or the piece up to a span), decoded in place."""
    full = tokenizer.decode_ids(before + ids)
    old = Counter(map(tuple, _rows(tokenizer.decode_ids(before))))
    rows = _rows(full)
    keep = np.ones(len(rows), bool)
    for i, row in enumerate(map(tuple, rows)):
        if old[row]:
            old[row] -= 1
            keep[i] = False
    new = symusic.Score(full.ticks_per_quarter, ttype="tick")
    new.tempos = full.tempos
    new.tracks.append(symusic.Track(name=TRACK, program=0, ttype="tick"))
    time, duration, pitch, velocity = rows[keep].T
    new.tracks[0].notes = symusic.Note.from_numpy(time.astype(np.int32), duration.astype(np.int32),
                                                  pitch.astype(np.int8), velocity.astype(np.int8), ttype="tick")
    return new


def splice_ids(tokenizer: PianoTokenizer, original: symusic.Score, before: list[int], ids: list[int],
               start_s: float, end_s: float | None = None) -> symusic.Score:
    """`original` with the notes that the tokens `ids` (following `before`) make put in place of its own
    between start_s and end_s (bar lines of the token grid; to its end when `end_s` is None)."""
    return splice(original, added_notes(tokenizer, before, ids), start_s, end_s,
                  ticks_per_beat=tokenizer.settings.positions_per_beat)


def _rows(score: symusic.Score) -> np.ndarray:
    """(time, duration, pitch, velocity) of every note of every track, as int64 rows."""
    cols = [t.notes.numpy() for t in score.tracks]
    if not cols:
        return np.zeros((0, 4), np.int64)
    return np.concatenate([np.stack([c[k].astype(np.int64) for k in ("time", "duration", "pitch", "velocity")], 1)
                           for c in cols])


def _notes(notes: dict[str, np.ndarray], keep: np.ndarray) -> symusic.NoteTickList:
    return symusic.Note.from_numpy(**{k: v[keep] for k, v in notes.items()}, ttype="tick")


def _cut_track(track: symusic.Track, timed: symusic.Track, inside: Inside) -> None:
    """Drop a track's pedals, controllers and lyrics from the cut on, but finish a pedal held at it."""
    controls = track.controls.numpy()
    after = inside(timed.controls.numpy()["time"])
    keep = ~after | _releases(controls, after)
    track.controls = symusic.ControlChange.from_numpy(**{k: v[keep] for k, v in controls.items()}, ttype="tick")
    pedals = track.pedals.numpy()
    keep = ~inside(timed.pedals.numpy()["time"])
    track.pedals = symusic.Pedal.from_numpy(**{k: v[keep] for k, v in pedals.items()}, ttype="tick")
    track.lyrics = _before(track.lyrics, timed.lyrics, inside)


def _releases(controls: dict[str, np.ndarray], after: np.ndarray) -> np.ndarray:
    """Events after the cut that finish a pedal down at it: that controller's, up to its first value
    below 64 (all of them if it never comes, as in the original)."""
    keep = np.zeros(len(after), bool)
    order = np.argsort(controls["time"], kind="stable")
    for number in PEDAL_CCS:
        mine = order[controls["number"][order] == number]
        held, later = mine[~after[mine]], mine[after[mine]]
        if len(held) and controls["value"][held[-1]] >= 64:
            up = np.flatnonzero(controls["value"][later] < 64)
            keep[later[:up[0] + 1 if len(up) else len(later)]] = True
    return keep


def _before(events: list, timed: list, inside: Inside) -> list:
    """The events (markers, key signatures, lyrics) that start before the cut."""
    drop = inside(np.array([e.time for e in timed], np.float32))
    return [e for e, gone in zip(events, drop, strict=True) if not gone]


def _in_ticks(new: symusic.Score, seconds: symusic.Score, ticks_per_quarter: int) -> symusic.NoteTickList:
    """`new`'s notes in the original's ticks, through the original's tempo map (`seconds` is it in seconds)."""
    holder = symusic.Score(ticks_per_quarter, ttype="second")
    holder.tempos = seconds.tempos
    track = symusic.Track(name=TRACK, program=0, ttype="second")
    for src in new.to("second").tracks:
        track.notes.extend(src.notes)
    holder.tracks.append(track)
    return holder.to("tick").tracks[0].notes


def _add_notes(score: symusic.Score, notes: symusic.NoteTickList) -> None:
    """Put `notes` in the score's TRACK (made at the end when there is none yet and there are notes),
    each note cut where its key is struck again (`restruck_ends`), so that the file as written and
    read back is the score as shown and played."""
    target = next((t for t in score.tracks if t.name == TRACK), None)
    if target is None and not len(notes):
        return
    if target is None:
        score.tracks.append(symusic.Track(name=TRACK, program=0, ttype="tick"))
        target = score.tracks[-1]
    target.notes.extend(notes)
    cols = target.notes.numpy()
    start = cols["time"].astype(np.int64)
    end = restruck_ends(start, start + cols["duration"], cols["pitch"].astype(np.int64))
    target.notes = symusic.Note.from_numpy(cols["time"], np.maximum(end - start, 1).astype(np.int32), cols["pitch"],
                                           cols["velocity"], ttype="tick")
    target.sort()
