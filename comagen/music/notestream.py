"""The notes of a continuation while it is sampled, each once, as soon as its tokens are whole: what a
page plays as the piece is written.

Decoding all tokens again on every poll would cost a long Continue's whole context each time; bars
have a fixed length (`SECONDS_PER_BAR`), so decoding may start afresh at any bar line. The window
starts at the prompt's last bar line and moves up to the newest bar line after each poll: a poll
decodes about a bar and what arrived since, at any length.
"""

from __future__ import annotations

from dataclasses import dataclass

from comagen.music.midi import SECONDS_PER_BAR
from comagen.music.tokenizer import PianoTokenizer


@dataclass(frozen=True)
class StreamedNote:
    """A new note, its times in seconds from where the continuation starts."""

    start: float
    pitch: int
    velocity: int
    duration: float


class NoteStream:
    """Feed it a continuation's tokens so far (`update`); it returns the notes not returned before."""

    def __init__(self, tokenizer: PianoTokenizer, prompt_ids: list[int], start_seconds: float) -> None:
        bar = tokenizer.bar_id
        cut = max((i for i, t in enumerate(prompt_ids) if t == bar), default=0)
        self.tokenizer, self.start = tokenizer, start_seconds
        self._head = list(prompt_ids[cut:])  # the prompt's last bar, before the first poll
        self._base = prompt_ids[:cut].count(bar) * SECONDS_PER_BAR  # where the window's first bar starts
        self._anchor = 0  # where the window starts in the continuation's tokens (after the head)
        self._done = 0  # new notes of the window returned already

    def update(self, ids: list[int]) -> list[StreamedNote]:
        """The notes among `ids` (all of the continuation's tokens so far) not returned before."""
        window = self._head + list(ids[self._anchor:])
        score = self.tokenizer.decode_ids(window).to("second")
        notes = sorted(((self._base + n.time, n.pitch, n.velocity, n.duration) for t in score.tracks for n in t.notes),
                       key=lambda n: n[0])  # stable: a chord in token order, so a note that arrives last stays last
        new = [n for n in notes if n[0] >= self.start - 1e-6]
        fresh = new[self._done:]
        self._move(ids, window, new)
        return [StreamedNote(round(t - self.start, 4), p, v, round(d, 4)) for t, p, v, d in fresh]

    def _move(self, ids: list[int], window: list[int], new: list[tuple]) -> None:
        """Start the next window at the newest bar line of the continuation (the last bar may be unfinished)."""
        bar = self.tokenizer.bar_id
        last = max((i for i in range(len(ids) - 1, self._anchor - 1, -1) if ids[i] == bar), default=None)
        if last is None or (last == self._anchor and not self._head):
            self._done = len(new)
            return
        self._base += window[:len(self._head) + last - self._anchor].count(bar) * SECONDS_PER_BAR  # its bar index
        self._head, self._anchor = [], last
        self._done = sum(1 for n in new if n[0] >= self._base - 1e-6)
