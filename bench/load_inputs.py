"""Hostile uploads for bench/app_load.py: files that are empty, cut short, not MIDI, too big, too
dense for a prompt, or valid but odd (sixteen tracks, an hour-long note), each with the answer the
app must give."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import symusic
from PIL import Image

import studio


def _score(notes: list[tuple[int, int, int]], tpq: int = 480) -> symusic.Score:
    score = symusic.Score(tpq)
    track = symusic.Track("piano", 0, False)
    for time_, duration, pitch in notes:
        track.notes.append(symusic.Note(time_, duration, pitch, 80))
    score.tracks.append(track)
    return score


def sixteen_tracks() -> bytes:
    """16 tracks, one of them drums: valid, and played as one piano (drums dropped)."""
    score = symusic.Score(480)
    for k in range(16):
        track = symusic.Track(f"track {k}", (8 * k) % 128, k == 9)
        for i in range(8):
            track.notes.append(symusic.Note(i * 480, 480, 36 + 3 * k, 80))
        score.tracks.append(track)
    return score.dumps_midi()


def hour_note() -> bytes:
    """One note held for an hour (120 bpm: 2 beats a second): valid; its length is capped in tokens."""
    return _score([(0, 480 * 2 * 3600, 60)]).dumps_midi()


def dense() -> bytes:
    """20,000 notes inside one second: far more tokens than any prompt may hold."""
    return _score([(i * 960 // 20000, 10, 21 + i % 88) for i in range(20000)]).dumps_midi()


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 80, 20)).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class Hostile:
    """An upload and what the server must answer: a refusal containing `message`, or a result."""

    name: str
    data: Callable[[Path], bytes]  # given a real MIDI file to cut or pad
    message: str | None  # None: a valid file the server must serve


HOSTILE = [
    Hostile("empty.mid", lambda src: b"", "empty.mid: the file is empty"),
    Hostile("truncated.mid", lambda src: src.read_bytes()[: len(src.read_bytes()) // 2],
            "truncated.mid: the MIDI data is corrupt"),
    Hostile("image.mid", lambda src: png(), "image.mid: not a MIDI file"),
    Hostile("too_big.mid", lambda src: src.read_bytes() + bytes(studio.UPLOAD_MAX_BYTES + 300_000),
            "MB upload limit"),
    Hostile("dense.mid", lambda src: dense(), "token prompt limit"),
    Hostile("song.mp3", lambda src: src.read_bytes(), "not a .mid or .midi file"),  # studio.inputs names it
    Hostile("sixteen_tracks.mid", lambda src: sixteen_tracks(), None),
    Hostile("hour_note.mid", lambda src: hour_note(), None),
]
