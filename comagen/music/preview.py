"""What a result plays and draws: the user's file spliced (`comagen.music.splice`), up to where the
piece its tokens make ends.

A splice keeps the file's notes and pedals whole, so a note the user held for an hour before the
cut lasts an hour in the result too, and the downloadable MIDI keeps it so: it is the user's note.
The preview (audio and piano roll) stops where the music does instead: the end of the piece as the
tokens tell it (prompt and new notes, every length capped by the tokenizer at `max_duration_beats`).
Without the cut a few seconds of new music after that hour-long note rendered an hour of audio (a
635 MB WAV and 1.2 GB of server memory, half a minute of a busy server's CPU) and drew an hour-wide
roll with the new music in a sliver of it. A note still sounding at the end ends there; notes,
controllers, pedals and lyrics from after it are dropped (none are, but in such files).
"""

from __future__ import annotations

import numpy as np
import symusic

from comagen.music.tokenizer import PianoTokenizer


def preview(tokenizer: PianoTokenizer, score: symusic.Score, ids: list[int]) -> symusic.Score:
    """`score` (a result spliced into a file) up to the end of the piece that the tokens `ids` (the
    whole piece: prompt and new ones) decode to, in seconds."""
    return until(score, tokenizer.decode_ids(ids).to("second").end())


def until(score: symusic.Score, end_s: float) -> symusic.Score:
    """`score` in seconds with what starts after `end_s` dropped and what sounds past it ended there."""
    out = score.to("second")
    for track in out.tracks:
        notes = _ended(track.notes.numpy(), end_s)
        track.notes = symusic.Note.from_numpy(**notes, ttype="second")
        pedals = _ended(track.pedals.numpy(), end_s)
        track.pedals = symusic.Pedal.from_numpy(**pedals, ttype="second")
        controls = track.controls.numpy()
        keep = controls["time"] <= end_s
        track.controls = symusic.ControlChange.from_numpy(**{k: v[keep] for k, v in controls.items()},
                                                          ttype="second")
        track.lyrics = [lyric for lyric in track.lyrics if lyric.time <= end_s]
    return out


def _ended(events: dict[str, np.ndarray], end_s: float) -> dict[str, np.ndarray]:
    """Columns of timed events (notes, pedals) starting by `end_s`, each lasting at most until it."""
    keep = events["time"] <= end_s
    out = {k: v[keep] for k, v in events.items()}
    out["duration"] = np.minimum(out["duration"], np.float32(end_s) - out["time"]).astype(out["duration"].dtype)
    return out
