"""A player's part as it arrives: key and pedal events in, whole notes out once nothing can change them.

A note's end is known at its key's release, or at the pedal's release when the pedal holds it, or
when the same key is struck again (a damper cuts it). A duet feeds notes to the model in the order
its tokens need (onset, then pitch), so a note waits while an earlier one is still held.
A keyboard can misbehave: a flood of notes (a cat on the keys) is thinned to a rate a pianist
plays at, and a key with no release is ended at the takeover, each with one message.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from comagen.music.midi import PIANO_HIGH, PIANO_LOW

MAX_NOTES_PER_SECOND = 40  # MAESTRO's densest second holds about 40 onsets; past it a note is noise
MAX_HELD_SECONDS = 6.0  # the longest duration a token holds (12 beats at 120 bpm)


@dataclass(frozen=True)
class TimedNote:
    """A note on a duet's clock (seconds), and whose it is."""

    start: float
    end: float
    pitch: int
    velocity: int
    part: str = "player"


@dataclass
class _Sounding:
    start: float
    pitch: int
    velocity: int
    released: float | None = None  # key release, while the pedal still holds it


class PlayerPart:
    """Key and pedal events on one clock; `settled()` gives the notes no later event can change."""

    def __init__(self) -> None:
        self.sounding: dict[int, _Sounding] = {}
        self.done: list[TimedNote] = []
        self.pedal_down = False
        self.messages: list[str] = []
        self._recent: deque[float] = deque()
        self._flooded = False

    def note_on(self, t: float, pitch: int, velocity: int) -> bool:
        """A key struck at `t`; False when the note is dropped (off the piano, or a flood)."""
        if velocity <= 0:
            self.note_off(t, pitch)
            return False
        if not PIANO_LOW <= pitch <= PIANO_HIGH or self._flood(t):
            return False
        if pitch in self.sounding:
            self._end(pitch, t)  # struck again: the damper cuts the ringing note
        self.sounding[pitch] = _Sounding(t, pitch, min(int(velocity), 127))
        return True

    def note_off(self, t: float, pitch: int) -> None:
        note = self.sounding.get(pitch)
        if note is None:
            return
        if self.pedal_down:
            note.released = t
        else:
            self._end(pitch, t)

    def pedal(self, t: float, down: bool) -> None:
        self.pedal_down = down
        if not down:
            for pitch in [p for p, n in self.sounding.items() if n.released is not None]:
                self._end(pitch, t)

    def settled(self) -> list[TimedNote]:
        """Whole notes in onset order that no held note precedes; they leave the part."""
        held = min((n.start for n in self.sounding.values()), default=float("inf"))
        ready = sorted((n for n in self.done if n.start < held), key=lambda n: (n.start, n.pitch))
        self.done = [n for n in self.done if n.start >= held]
        return ready

    def close(self, t: float) -> list[TimedNote]:
        """End everything at `t` (the turn passes): a key still down is a stuck note, said once."""
        stuck = [p for p, n in self.sounding.items() if n.released is None]
        if stuck:
            self.messages.append(f"{len(stuck)} key(s) still held at the takeover (no note-off): ended there")
        for pitch in list(self.sounding):
            self._end(pitch, t)
        self.pedal_down = False
        return self.settled()

    def _end(self, pitch: int, t: float) -> None:
        n = self.sounding.pop(pitch)
        end = min(max(t, n.start), n.start + MAX_HELD_SECONDS)
        self.done.append(TimedNote(n.start, end, pitch, n.velocity))

    def _flood(self, t: float) -> bool:
        """More than MAX_NOTES_PER_SECOND onsets in the last second: drop this one (said once)."""
        while self._recent and self._recent[0] <= t - 1.0:
            self._recent.popleft()
        if len(self._recent) >= MAX_NOTES_PER_SECOND:
            if not self._flooded:
                self.messages.append(f"more than {MAX_NOTES_PER_SECOND} notes a second: the extra notes are "
                                     "ignored (a cat on the keyboard?)")
                self._flooded = True
            return True
        self._recent.append(t)
        return False
