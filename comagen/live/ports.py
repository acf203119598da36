"""MIDI in and out for the terminal duet: mido over python-rtmidi, and a MIDI file played in real time
as if a player were at the keys (how the tests and a keyboard-less user drive a duet)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from comagen.errors import ComagenError
from comagen.music.midi import load_score

KeyEvent = Callable[[float, int, int], None]  # (monotonic time, pitch, velocity; 0 = release)
PedalEvent = Callable[[float, bool], None]
SUSTAIN = 64


class PortError(ComagenError):
    """A MIDI port that does not exist, cannot open, or went away."""


def _mido() -> Any:
    try:
        import mido

        mido.set_backend("mido.backends.rtmidi")
        return mido
    except ImportError as exc:
        raise PortError(f"MIDI ports need mido and python-rtmidi ({exc})") from None


def port_names() -> dict[str, list[str]]:
    """The MIDI inputs and outputs this machine has (empty lists where it has no MIDI system)."""
    mido = _mido()
    try:
        return {"inputs": list(mido.get_input_names()), "outputs": list(mido.get_output_names())}
    except Exception as exc:  # rtmidi raises its own types where no MIDI system runs
        raise PortError(f"no MIDI system to list ports from ({type(exc).__name__}: {exc})") from None


def open_input(name: str, on_key: KeyEvent, on_pedal: PedalEvent) -> Any:
    """Open input `name`; its messages call `on_key`/`on_pedal` on rtmidi's thread."""
    mido = _mido()

    def handle(msg: Any) -> None:
        now = time.monotonic()
        if msg.type in ("note_on", "note_off"):
            on_key(now, msg.note, msg.velocity if msg.type == "note_on" else 0)
        elif msg.type == "control_change" and msg.control == SUSTAIN:
            on_pedal(now, msg.value >= 64)

    try:
        return mido.open_input(name, callback=handle)
    except Exception as exc:
        raise PortError(f"cannot open MIDI input {name!r} ({exc}); see --list-ports") from None


def open_output(name: str) -> Any:
    try:
        return _mido().open_output(name)
    except Exception as exc:
        raise PortError(f"cannot open MIDI output {name!r} ({exc}); see --list-ports") from None


def file_events(path: Path) -> list[tuple[float, int, int, int]]:
    """A MIDI file's keys and sustain pedal as (seconds, kind, pitch or controller, value), in time order;
    kind 1 strikes, 0 releases, 2 is the pedal. Bad files get comagen's one-line errors."""
    score = load_score(path).to("second")
    events = []
    for track in score.tracks:
        for n in track.notes:
            events += [(n.time, 1, n.pitch, n.velocity), (n.time + n.duration, 0, n.pitch, 0)]
        for p in track.pedals:
            events += [(p.time, 2, SUSTAIN, 1), (p.time + p.duration, 2, SUSTAIN, 0)]
    return sorted(events, key=lambda e: (e[0], e[1]))


def play_events(events: list[tuple[float, int, int, int]], on_key: KeyEvent, on_pedal: PedalEvent,
                stop: threading.Event) -> threading.Thread:
    """Play `file_events` in real time from now, on a thread, as a player would."""

    def run() -> None:
        start = time.monotonic()
        for t, kind, pitch, value in events:
            if stop.wait(max(start + t - time.monotonic(), 0.0)):
                return
            now = time.monotonic()
            on_pedal(now, bool(value)) if kind == 2 else on_key(now, pitch, value)

    thread = threading.Thread(target=run, daemon=True, name="comagen-in-file")
    thread.start()
    return thread
