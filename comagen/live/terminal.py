"""The duet in a terminal: a MIDI keyboard (or a MIDI file played in real time) in, the model's
answers out through FluidSynth or a MIDI port. It only moves notes between the ports and a
`DuetLoop`; the take (both parts) is written as MIDI at the end."""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from comagen.bundle.checkpoint import Bundle
from comagen.generation.duet import Duet
from comagen.generation.settings import Settings
from comagen.generation.turns import DuetLoop, Event, Turns
from comagen.live.ports import PortError, file_events, open_input, open_output, play_events, port_names
from comagen.live.sound import MODEL_CHANNEL, PLAYER_CHANNEL, FluidOut, PortOut, Scheduler
from comagen.music.midi import midi_bytes


@dataclass
class DuetIO:
    """Where the player's notes come from and where the sound goes."""

    in_port: str | None = None
    in_file: Path | None = None
    out_port: str | None = None
    audio_driver: str | None = None  # FluidSynth's driver when no out port (None: its default; "file")
    audio_file: Path | None = None  # with driver "file": where FluidSynth writes


@dataclass
class _Log:
    """What the terminal shows and the summary counts."""

    quiet: bool
    answers: int = 0
    model_notes: int = 0
    latencies: list[float] = field(default_factory=list)
    turn_at: float | None = None
    ahead: float | None = None  # start of the first note prepared ahead of the turn
    player_turn: bool = True

    def say(self, text: str) -> None:
        if not self.quiet:
            print(text, file=sys.stderr, flush=True)


def run_duet(bundle: Bundle, settings: Settings, turns: Turns, io: DuetIO, take: Path,
             *, max_seconds: float = 3600.0, quiet: bool = False) -> dict:
    """Play a duet until the input file has played and been answered, `max_seconds`, or Ctrl-C."""
    events = file_events(io.in_file) if io.in_file else None
    duet = Duet(bundle, settings)
    out = PortOut(open_output(io.out_port)) if io.out_port else FluidOut(io.audio_driver, io.audio_file)
    sound, log, stop = Scheduler(out), _Log(quiet), threading.Event()
    loop = DuetLoop(duet, turns, lambda e: _on_event(e, sound, log))

    def key(t: float, pitch: int, velocity: int) -> None:
        sound.now(PLAYER_CHANNEL, pitch, velocity)
        loop.key(t, pitch, velocity)

    def pedal(t: float, down: bool) -> None:
        loop.pedal(t, down)

    started = time.monotonic()
    port = open_input(io.in_port, key, pedal) if io.in_port else None
    feeder = play_events(events, key, pedal, stop) if events is not None else None
    log.say("playing: the model answers after a pause of "
            f"{turns.pause:g} s ({turns.answer_bars:g} bars); Ctrl-C ends the duet")
    try:
        _wait(feeder, port, io.in_port, log, started + max_seconds)
    finally:
        stop.set()
        loop.close()
        sound.close()
        if port is not None:
            port.close()
    take.parent.mkdir(parents=True, exist_ok=True)
    take.write_bytes(midi_bytes(duet.take()))
    parts = {t.name.lower(): len(t.notes) for t in duet.take().tracks}
    return {"take": str(take), "notes": parts, "answers": log.answers, "runtime": duet.runtime.name,
            "first_note_ms": [round(1000 * x, 1) for x in log.latencies],
            "seconds": round(time.monotonic() - started, 2)}


def _wait(feeder: threading.Thread | None, port: object, in_port: str | None, log: _Log, deadline: float) -> None:
    """Until the file has played and its last phrase was answered, the port vanished, or the deadline."""
    answered_before = None
    while time.monotonic() < deadline:
        if feeder is not None and not feeder.is_alive():
            answered_before = log.answers if answered_before is None else answered_before
            if log.answers > answered_before and log.player_turn:
                return
        if port is not None and in_port not in port_names()["inputs"]:
            raise PortError(f"MIDI input {in_port!r} vanished: the duet ends here and the take so far is saved")
        time.sleep(0.05)


def _on_event(event: Event, sound: Scheduler, log: _Log) -> None:
    kind = event["type"]
    if kind == "note":
        if event.get("tentative"):
            log.ahead = event["start"] if log.ahead is None else log.ahead
        elif log.turn_at is not None:
            log.latencies.append(time.monotonic() - log.turn_at)
            log.turn_at = None
        log.model_notes += 1
        sound.at(event["start"], MODEL_CHANNEL, event["pitch"], event["velocity"])
        sound.at(event["end"], MODEL_CHANNEL, event["pitch"], 0)
    elif kind == "turn" and event["who"] == "model":
        log.answers += 1
        log.player_turn = False
        if log.ahead is not None:  # prepared while the pause ran: it sounds as the turn passes
            log.latencies.append(max(log.ahead - event["at"], 0.0))
        else:
            log.turn_at = time.monotonic()
        log.ahead = None
        log.say(f"[model] answering (turn {log.answers})")
    elif kind == "turn":
        log.say("[you] your turn")
        log.player_turn = True
    elif kind in ("cut", "retract"):
        sound.cancel(MODEL_CHANNEL)
        log.ahead = None
    elif kind in ("message", "error"):
        log.say(f"{kind}: {event['text']}")
