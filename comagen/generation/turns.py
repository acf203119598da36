"""Turn-taking around a `Duet`, on its own thread, so a front end (the browser page, the terminal)
only moves notes: it puts the player's key and pedal events in with its own clock's times and gets
events back through `emit` - the turn passing, each answer note with its times, messages.

The model takes the turn when the player has played and then nothing is held for `pause` seconds,
or when asked (`take_over`, a pedal or a button); a key struck during an answer cuts it there and
hands the turn back. While the pause runs, the answer's first PREPARE_S seconds are sampled ahead
and sent as tentative notes timed for the moment the turn will pass, so the front end sounds them
then, with no sampling in between; the player playing on takes them back (a "retract" event).
An answer is sampled at most AHEAD seconds before it sounds: enough to ride
out a busy moment of the machine, little enough that a cut-in leaves the model's stream only that
much music the player never heard. The front end's clock is followed through the skew seen on
each event.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from comagen.errors import ComagenError, ConfigError
from comagen.generation.duet import Duet
from comagen.generation.player import PlayerPart, TimedNote
from comagen.music.midi import SECONDS_PER_BAR

log = logging.getLogger("comagen.duet")
Event = dict
AHEAD = 1.0  # seconds an answer is sampled before it sounds
PREPARE_S = 0.5  # seconds of an answer sampled ahead while the pause runs


@dataclass(frozen=True)
class Turns:
    """When the model answers, and for how long."""

    pause: float = 1.0  # seconds of silence that pass the turn
    answer_bars: float = 4.0

    def __post_init__(self) -> None:
        if not 0.2 <= self.pause <= 10:
            raise ConfigError(f"pause must be between 0.2 and 10 seconds, not {self.pause:g}")
        if not 0.5 <= self.answer_bars <= 64:
            raise ConfigError(f"answer length must be between 0.5 and 64 bars, not {self.answer_bars:g}")

    @property
    def answer_seconds(self) -> float:
        return self.answer_bars * SECONDS_PER_BAR


class DuetLoop:
    """A `Duet` driven from a queue on its own thread; `emit` is called from that thread."""

    def __init__(self, duet: Duet, turns: Turns, emit: Callable[[Event], None]) -> None:
        self.duet, self.turns, self.emit = duet, turns, emit
        self.player = PlayerPart()
        self.inbox: queue.Queue[tuple] = queue.Queue()
        self.arrived = threading.Event()  # the player did something: a running answer stops
        self.skew = 0.0  # front-end clock minus this process's monotonic clock
        self.armed = False  # the player has played since the last answer
        self.last_activity = 0.0
        self.answer_end: float | None = None  # clock time the running answer's last note ends
        self.prepared_all = False  # the prepared answer reached its length (or PREPARE_S)
        self._thread = threading.Thread(target=self._run, daemon=True, name="comagen-duet")
        self._thread.start()

    # ---- what front ends call (any thread)
    def key(self, t: float, pitch: int, velocity: int) -> None:
        """A key struck (velocity > 0) or released (velocity 0) at front-end time `t`."""
        self._put(("key", t, int(pitch), int(velocity)))

    def pedal(self, t: float, down: bool) -> None:
        self._put(("pedal", t, bool(down)))

    def take_over(self, t: float) -> None:
        """The player hands the turn over now (a button or a pedal)."""
        self._put(("take_over", t))

    def close(self, timeout: float = 10.0) -> None:
        self.duet.stop()
        self._put(("close",))
        self._thread.join(timeout)

    def _put(self, event: tuple) -> None:
        self.inbox.put(event)
        self.arrived.set()

    def now(self) -> float:
        return time.monotonic() + self.skew

    # ---- the thread
    def _run(self) -> None:
        try:
            while True:
                try:
                    event = self.inbox.get(timeout=self._wait())
                except queue.Empty:
                    self._due()
                    continue
                if event[0] == "close":
                    return
                self._handle(event)
        except ComagenError as exc:
            self.emit({"type": "error", "text": str(exc)})
        except Exception:
            log.exception("duet failed")
            self.emit({"type": "error", "text": "the duet stopped on an internal error (see the server log)"})

    def _wait(self) -> float:
        """Seconds until the pause passes the turn, or until the answer has sounded (at most 1 s); 0
        while there is more of an answer to prepare."""
        if self.answer_end is not None:
            return min(max(self.answer_end - self.now(), 0.0), 1.0)
        if self._quiet():
            return 0.0 if self._may_prepare() else min(max(self._turn_at() - self.now(), 0.0), 1.0)
        return 1.0

    def _quiet(self) -> bool:
        """The player has played and holds nothing: the turn passes when the pause has run."""
        return self.armed and not self.player.sounding and self.answer_end is None

    def _turn_at(self) -> float:
        return self.last_activity + self.turns.pause

    def _may_prepare(self) -> bool:
        prepared = self.duet.prepared
        return (not self.prepared_all and self.now() < self._turn_at()
                and (not prepared or prepared[-1].start < self._turn_at() + PREPARE_S))

    def _due(self) -> None:
        now = self.now()
        if self.answer_end is not None and now >= self.answer_end:
            self.answer_end = None
            self.emit({"type": "turn", "who": "player", "at": now})
        elif self._quiet() and now >= self._turn_at():
            self._answer(now)
        elif self._quiet() and self._may_prepare():
            self._prepare()

    def _prepare(self) -> None:
        """One more note of the answer, sent ahead as tentative."""
        note = self.duet.prepare(self._turn_at(), self.turns.answer_seconds)
        if note is None:
            self.prepared_all = True
            return
        self.emit({**self._note_event(note), "tentative": True})

    def _withdraw(self) -> None:
        """The player did something while the pause ran: a prepared answer is taken back."""
        if self.duet.prepared:
            self.duet.discard()
            self.emit({"type": "retract"})
        self.prepared_all = False

    def _handle(self, event: tuple) -> None:
        kind, t = event[0], event[1]
        self.skew = t - time.monotonic()
        self._withdraw()
        if kind == "take_over":
            self._answer(t)
            return
        if self.answer_end is not None:
            self._cut(t)
        if kind == "key":
            self._key(t, *event[2:])
        else:
            self.player.pedal(t, event[2])
        self.last_activity = max(self.last_activity, t)
        self.duet.play(self.player.settled())
        self._say()

    def _key(self, t: float, pitch: int, velocity: int) -> None:
        if velocity > 0:
            self.armed |= self.player.note_on(t, pitch, velocity)
        else:
            self.player.note_off(t, pitch)

    def _say(self) -> None:
        """Pass on what the player part had to say (a flood, a stuck key), once each."""
        while self.player.messages:
            self.emit({"type": "message", "text": self.player.messages.pop(0)})

    def _answer(self, t: float) -> None:
        """The model's turn from `t`: its notes are emitted as they are sampled (those prepared ahead
        were sent already); a key in the inbox stops it (the key itself is handled next, and cuts
        the answer where it falls)."""
        closing = self.player.close(t)
        if closing:
            self._withdraw()
            self.duet.play(closing)
        self._say()
        self.armed, self.prepared_all = False, False
        self.arrived.clear()
        if not self.inbox.empty():  # a key that came in just now cuts the answer at its first note
            self.arrived.set()
        sent = {id(n) for n in self.duet.prepared}
        self.emit({"type": "turn", "who": "model", "at": t})
        end = t
        for note in self.duet.answer(t, self.turns.answer_seconds):
            if id(note) not in sent:
                self.emit(self._note_event(note))
            end = max(end, note.end)
            if self.arrived.wait(max(note.start - AHEAD - self.now(), 0.0)):
                self.duet.stop()
        self.answer_end = end
        self.emit({"type": "answered", "until": end})

    @staticmethod
    def _note_event(note: TimedNote) -> Event:
        return {"type": "note", "part": "model", "pitch": note.pitch, "velocity": note.velocity,
                "start": note.start, "end": note.end}

    def _cut(self, t: float) -> None:
        """A player event at `t` while the answer sounds: what had not sounded is dropped."""
        if t < self.answer_end:
            self.duet.cut_in(t)
            self.emit({"type": "cut", "at": t})
        self.answer_end = None
        self.emit({"type": "turn", "who": "player", "at": t})
