"""REMI tokens for notes that arrive one at a time (a player at a keyboard), written onto a stream.

Re-tokenizing a whole take at every note would cost more with every bar played; a player's note
needs only its Bar lines, Position, Pitch, Velocity and Duration after where the stream already is.
Velocity and duration bins come from the tokenizer itself (one encoded note, cached), so a note
written here is the note `PianoTokenizer.encode_prepared` would write, and tests hold it to that.
"""

from __future__ import annotations

from functools import lru_cache

import symusic

from comagen.errors import ConfigError
from comagen.music.grammar import AFTER_DURATION, START, GrammarState, RemiGrammar
from comagen.music.midi import GRID_BPM, PIANO_HIGH, PIANO_LOW
from comagen.music.tokenizer import PianoTokenizer


class RemiWriter:
    """Writes notes on the token grid (`tick` = one position) after a stream's `GrammarState`."""

    def __init__(self, tokenizer: PianoTokenizer, grammar: RemiGrammar) -> None:
        if tokenizer.is_bpe:
            raise ConfigError("a duet needs a plain REMI tokenizer, not BPE")
        self.tokenizer, self.grammar = tokenizer, grammar
        self.ticks_per_bar = grammar.positions_per_bar
        self.max_ticks = tokenizer.settings.max_duration_beats * tokenizer.settings.positions_per_beat
        self._bins = lru_cache(maxsize=4096)(self._velocity_and_duration)
        tpq = tokenizer.settings.positions_per_beat
        self._ticks = {i: _duration_ticks(text, tpq) for text, i in tokenizer.remi.vocab.items()
                       if text.startswith("Duration_")}

    def tick_of(self, state: GrammarState) -> int:
        """The grid tick a stream stands at (-1 before its first bar)."""
        if state.bars == 0:
            return -1
        return (state.bars - 1) * self.ticks_per_bar + max(state.position, 0)

    def can_write(self, state: GrammarState, tick: int, pitch: int) -> bool:
        """Whether a note at `tick` keeps the stream's order: later than where it stands, or at the
        same position after a whole note with another pitch."""
        if not PIANO_LOW <= pitch <= PIANO_HIGH or state.state not in (START, AFTER_DURATION):
            return False
        here = self.tick_of(state)
        return tick > here or (tick == here and state.position >= 0 and pitch not in state.struck)

    def note(self, state: GrammarState, tick: int, pitch: int, velocity: int, ticks: int) -> list[int]:
        """The ids that play one note after `state` (check `can_write` first)."""
        bar, position = divmod(tick, self.ticks_per_bar)
        g = self.grammar
        ids = [g.bar_id] * (bar + 1 - state.bars)
        if ids or position != state.position:
            ids.append(int(g.position_id[position]))
        velocity_id, duration_id = self._bins(min(max(int(velocity), 1), 127), min(max(int(ticks), 1), self.max_ticks))
        return [*ids, g.pitch_id[pitch], velocity_id, duration_id]

    def duration_ticks(self, duration_id: int) -> int:
        """How many ticks a Duration id holds."""
        return self._ticks[duration_id]

    def _velocity_and_duration(self, velocity: int, ticks: int) -> tuple[int, int]:
        """The tokenizer's own Velocity and Duration ids for a note of `velocity` lasting `ticks`."""
        tpq = self.tokenizer.settings.positions_per_beat
        score = symusic.Score(tpq, ttype="tick")
        score.tempos.append(symusic.Tempo(0, GRID_BPM, ttype="tick"))
        track = symusic.Track(name="Piano", program=0, ttype="tick")
        track.notes.append(symusic.Note(0, ticks, 60, velocity, ttype="tick"))
        score.tracks.append(track)
        ids = self.tokenizer.encode_prepared(score)
        return ids[-2], ids[-1]


def _duration_ticks(text: str, ticks_per_beat: int) -> int:
    """miditok's `Duration_beats.slots.resolution` in grid ticks."""
    beats, slots, resolution = (int(x) for x in text.removeprefix("Duration_").split("."))
    return beats * ticks_per_beat + slots * ticks_per_beat // resolution
