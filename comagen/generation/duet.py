"""A duet: the player's notes go into the model's streaming state while they play, so when the turn
passes the model answers after one step, not a prefill.

`Duet` is the engine on one clock (seconds, the front end's own): player notes in (`play`), an
answer out (`answer`, notes with times as they are sampled), `cut_in` when the player interrupts,
and `take()`, both parts as one score. While the player is quiet, the first notes of the answer
can be sampled ahead (`prepare`, on a snapshot of the stream) for the moment the pause will pass
the turn, so they sound exactly then; if the player plays on, `discard` restores the snapshot.
Model time runs on the token grid; the clock maps onto it
through an offset that each answer moves so its first note sounds at once. An interrupted answer
keeps only what sounded in the take; the stream keeps what it read (its front end samples an answer
only a little ahead of playback, so that is at most about a second more), and the player's next
notes follow on from there: a cut-in costs nothing, where rebuilding the stream would cost a prefill
of the take at the moment the player starts again.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import symusic
import torch

from comagen.bundle.checkpoint import Bundle
from comagen.generation.leans import Leans
from comagen.generation.player import TimedNote
from comagen.generation.sampling import row_uniforms, sample_rows
from comagen.generation.settings import Settings
from comagen.music.grammar import AFTER_DURATION, GrammarState, RemiGrammar
from comagen.music.midi import GRID_BPM, MODEL_TRACK, PLAYER_TRACK
from comagen.music.writer import RemiWriter
from comagen.runtime import choose_runtime

PARTS = {"player": PLAYER_TRACK, "model": MODEL_TRACK}  # TimedNote.part -> track name


@dataclass
class _Answer:
    """An answer being sampled: its length, its first note's tick, notes so far, tokens left."""

    seconds: float
    first: int | None = None
    count: int = 0
    budget: int = field(init=False)

    def __post_init__(self) -> None:
        self.budget = int(self.seconds * 150) + 64  # far more tokens than `seconds` of music needs


@dataclass(frozen=True)
class _Mark:
    """Where a duet stood before an answer was prepared: all that `discard` puts back."""

    stream: object
    logits: np.ndarray
    state: GrammarState
    history: int
    notes: int
    leans: Leans | None
    offset: float | None


@dataclass
class _Ahead:
    """An answer prepared while the player is quiet, for a turn passing at `at`."""

    at: float
    mark: _Mark
    notes: list[TimedNote] = field(default_factory=list)


class Duet:
    """The engine of one duet; not thread-safe except `stop()`, which ends a running `answer` early."""

    def __init__(self, bundle: Bundle, settings: Settings | None = None, runtime: str = "auto") -> None:
        self.bundle, self.tokenizer = bundle, bundle.tokenizer
        self.grammar = RemiGrammar(self.tokenizer)
        self.writer = RemiWriter(self.tokenizer, self.grammar)
        settings = settings or Settings()
        self.request = settings.request(bundle.composers, bundle.config.windows, max_tokens=1024, runtime=runtime)
        self.runtime = choose_runtime(bundle, runtime, self.request.windows)
        self.generator = torch.Generator().manual_seed(self.request.seed)
        self.seconds_per_tick = self.grammar.seconds_per_position
        self.offset: float | None = None  # clock seconds at model time 0
        self.notes: list[TimedNote] = []
        self._stop = threading.Event()
        self.history: list[int] = []  # every token the stream has read, both parts
        self.state = GrammarState()
        # the leans (key, dynamics, pace) follow both parts as they are played, ready at a takeover
        self.leans = Leans.maybe(self.grammar, [], 1, self.request.sampling)
        self._ahead: _Ahead | None = None
        self._current = _Answer(0.0)
        self.stream = self.runtime.open(torch.tensor([self.request.composer]))
        with torch.inference_mode():
            self.logits = self.stream.prefill(np.array([[self.tokenizer.bos_id]]))

    # ---- the stream

    def _feed(self, ids: list[int]) -> None:
        with torch.inference_mode():
            for token in ids:
                self.logits = self.stream.step(np.array([token]))
                if self.leans:
                    self.leans.played(0, token, self.state)
                self.state = self.state.advance(self.grammar, token)
                self.history.append(token)

    # ---- the clock
    def tick(self, clock: float) -> int:
        return round((clock - (self.offset or 0.0)) / self.seconds_per_tick)

    def clock(self, tick: int) -> float:
        return (self.offset or 0.0) + tick * self.seconds_per_tick

    # ---- the player's turn
    def play(self, notes: list[TimedNote]) -> int:
        """Feed whole player notes (onset order); returns the tokens fed. A prepared answer is taken
        back first: the player played on."""
        if notes:
            self.discard()
        fed = 0
        for note in notes:
            if self.offset is None:
                self.offset = note.start
            tick = self.tick(note.start)
            tick = max(tick, self.writer.tick_of(self.state))
            if not self.writer.can_write(self.state, tick, note.pitch):
                tick += 1
            ticks = max(round((note.end - note.start) / self.seconds_per_tick), 1)
            ids = self.writer.note(self.state, tick, note.pitch, note.velocity, ticks)
            self._feed(ids)
            fed += len(ids)
            self.notes.append(TimedNote(self.clock(tick), self.clock(tick) + ticks * self.seconds_per_tick,
                                        note.pitch, note.velocity, "player"))
        return fed

    # ---- the model's turn
    def stop(self) -> None:
        """Ask a running `answer` to end after its current note (safe from another thread)."""
        self._stop.set()

    def answer(self, now: float, seconds: float) -> Iterator[TimedNote]:
        """The model's answer, note by note: first what `prepare` sampled ahead (a turn passing at its
        time), else a first note sounding at `now` plus the time spent sampling it; `seconds` of music
        (it ends on a whole note)."""
        self._stop.clear()
        ahead = self._ahead
        if ahead is not None and ahead.at > now:
            self.discard()
            ahead = None
        self._ahead = None
        if ahead is None:
            self._current = _Answer(seconds)
        yield from (ahead.notes if ahead else [])
        started = time.perf_counter()
        while not self._stop.is_set():
            note = self._next_note()
            if note is None:
                return
            if self._current.count == 1:
                self.offset = now + (time.perf_counter() - started) - note[0] * self.seconds_per_tick
            yield self._model_note(*note)

    def prepare(self, at: float, seconds: float) -> TimedNote | None:
        """One more note of the answer the model would give if the turn passed at `at`, sampled while
        the player is quiet so the answer sounds the moment the turn passes (the first note exactly
        at `at`); None once the answer's length is reached. `discard` takes it all back when the
        player plays on, `answer` carries on from it when the turn passes."""
        if self._ahead is None:
            self._ahead = _Ahead(at, self._mark())
            self._current = _Answer(seconds)
        note = self._next_note()
        if note is None:
            return None
        if self._current.count == 1:
            self.offset = at - note[0] * self.seconds_per_tick
        timed = self._model_note(*note)
        self._ahead.notes.append(timed)
        return timed

    @property
    def prepared(self) -> list[TimedNote]:
        """The notes `prepare` has sampled ahead (none when nothing is prepared)."""
        return self._ahead.notes if self._ahead else []

    def discard(self) -> None:
        """Take back a prepared answer: the stream, the leans and the take as they were before it."""
        if self._ahead is None:
            return
        mark, self._ahead = self._ahead.mark, None
        self.stream.restore(mark.stream)
        self.logits, self.state, self.leans, self.offset = mark.logits, mark.state, mark.leans, mark.offset
        del self.history[mark.history:]
        del self.notes[mark.notes:]

    def _mark(self) -> _Mark:
        leans = copy.deepcopy(self.leans, {id(self.grammar): self.grammar})
        return _Mark(self.stream.snapshot(), self.logits, self.state, len(self.history), len(self.notes), leans,
                     self.offset)

    def _next_note(self) -> tuple[int, int, int, int] | None:
        """Sample up to the next whole note of the current answer: its tick, pitch, velocity and length;
        None when the next would start past the answer's length (or its token budget is spent)."""
        answer, pending = self._current, []
        while answer.budget > 0:
            answer.budget -= 1
            token = self._sample()
            if answer.first is not None and self._past(token, answer.first, answer.seconds):
                return None
            before = self.state
            self._feed([token])
            pending.append(token)
            if self.grammar.kind[token] == "Duration":
                note = self._note_of(pending, before)
                answer.count += 1
                answer.first = note[0] if answer.first is None else answer.first
                return note
        return None

    def _sample(self) -> int:
        allowed = self.state.allowed_row(self.grammar)[None]
        allowed[0, self.grammar.eos_id] = False  # a duet answers; it does not end the piece
        logits, factors, sampling = self.logits[:1], None, self.request.sampling
        if self.leans:
            logits, factors = self.leans.shaped(logits, allowed, [self.state])
        return int(sample_rows(logits, allowed, sampling, row_uniforms(1, sampling, self.generator), factors)[0])

    def _past(self, token: int, first: int, seconds: float) -> bool:
        """Whether `token` opens a time past the answer's length (only between whole notes)."""
        if self.state.state != AFTER_DURATION or self.grammar.kind[token] not in ("Bar", "Position"):
            return False
        after = self.state.advance(self.grammar, token)
        return self.writer.tick_of(after) - first >= seconds / self.seconds_per_tick

    def _note_of(self, pending: list[int], before: GrammarState) -> tuple[int, int, int, int]:
        """Tick, pitch, velocity and length of the note whose last token (Duration) was just fed."""
        pitch_id, velocity_id, duration_id = pending[-3:]
        value = self.grammar.value
        return (self.writer.tick_of(before), value[pitch_id], value[velocity_id],
                self.writer.duration_ticks(duration_id))

    def _model_note(self, tick: int, pitch: int, velocity: int, ticks: int) -> TimedNote:
        note = TimedNote(self.clock(tick), self.clock(tick + ticks), pitch, velocity, "model")
        self.notes.append(note)
        return note

    def cut_in(self, clock: float) -> None:
        """The player takes the turn at `clock`: answer notes not yet begun leave the take, sounding ones
        end there; the player's notes go on from where the stream stands."""
        self.notes = [n if n.part == "player" or n.end <= clock else TimedNote(n.start, clock, n.pitch, n.velocity,
                                                                                "model")
                      for n in self.notes if n.part == "player" or n.start < clock]
        self.offset = clock - max(self.writer.tick_of(self.state), 0) * self.seconds_per_tick

    # ---- the result
    def take(self) -> symusic.Score:
        """Both parts in seconds, as two tracks (player, model), for the roll, the audio and the MIDI."""
        score = symusic.Score(ttype="second")
        score.tempos.append(symusic.Tempo(0.0, GRID_BPM, ttype="second"))
        origin = min((n.start for n in self.notes), default=0.0)
        for part, name in PARTS.items():
            track = symusic.Track(name=name, program=0, ttype="second")
            for n in self.notes:
                if n.part == part:
                    track.notes.append(symusic.Note(n.start - origin, n.end - n.start, n.pitch, n.velocity,
                                                    ttype="second"))
            score.tracks.append(track)
        return score
