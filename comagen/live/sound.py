"""Timed sound out for the terminal duet: notes scheduled on the monotonic clock, played through the
real FluidSynth library (to the sound card, or with driver "file" to a WAV) or sent to a MIDI port."""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from pathlib import Path
from typing import Any

from comagen.errors import ComagenError
from comagen.render.audio import load_fluidsynth
from comagen.render.soundfont import find_soundfont

MODEL_CHANNEL, PLAYER_CHANNEL = 1, 0


class FluidOut:
    """A live FluidSynth with a piano on both channels; `driver` "file" writes to `file_name`."""

    def __init__(self, driver: str | None = None, file_name: Path | None = None) -> None:
        fluidsynth = load_fluidsynth()
        options = {"audio.file.name": str(file_name)} if file_name else {}
        self.synth = fluidsynth.Synth(**options)
        if driver:
            self.synth.setting("audio.driver", driver)
        # the audio driver alone: pyfluidsynth's start() also opens a MIDI driver, which we do not use
        self.synth.audio_driver = fluidsynth.new_fluid_audio_driver(self.synth.settings, self.synth.synth)
        if not self.synth.audio_driver:
            self.synth.delete()
            raise ComagenError(f"FluidSynth cannot open the audio driver {driver or '(its default)'}: try "
                               "--audio-driver (alsa, pulseaudio, file) or --out PORT")
        sfid = self.synth.sfload(str(find_soundfont()))
        for channel in (PLAYER_CHANNEL, MODEL_CHANNEL):
            self.synth.program_select(channel, sfid, 0, 0)

    def send(self, channel: int, pitch: int, velocity: int) -> None:
        if velocity:
            self.synth.noteon(channel, pitch, velocity)
        else:
            self.synth.noteoff(channel, pitch)

    def close(self) -> None:
        self.synth.delete()


class PortOut:
    """A MIDI output port (a Disklavier, a DAW, a hardware synth)."""

    def __init__(self, port: Any) -> None:
        import mido

        self.port, self.mido = port, mido

    def send(self, channel: int, pitch: int, velocity: int) -> None:
        kind = "note_on" if velocity else "note_off"
        self.port.send(self.mido.Message(kind, channel=channel, note=pitch, velocity=velocity))

    def close(self) -> None:
        self.port.close()


class Scheduler:
    """Plays (time, channel, pitch, velocity) events at their monotonic times on its own thread."""

    def __init__(self, out: FluidOut | PortOut) -> None:
        self.out = out
        self.heap: list[tuple[float, int, int, int, int]] = []
        self.order = itertools.count()
        self.cv = threading.Condition()
        self.closed = False
        self.played = 0
        self._thread = threading.Thread(target=self._run, daemon=True, name="comagen-sound")
        self._thread.start()

    def now(self, channel: int, pitch: int, velocity: int) -> None:
        self.at(time.monotonic(), channel, pitch, velocity)

    def at(self, t: float, channel: int, pitch: int, velocity: int) -> None:
        with self.cv:
            heapq.heappush(self.heap, (t, next(self.order), channel, pitch, velocity))
            self.cv.notify()

    def cancel(self, channel: int) -> None:
        """Drop what `channel` has yet to play and silence what it holds (an interrupted answer)."""
        with self.cv:
            offs = {e[3] for e in self.heap if e[2] == channel}
            self.heap = [e for e in self.heap if e[2] != channel]
            heapq.heapify(self.heap)
        for pitch in offs:
            self.out.send(channel, pitch, 0)

    def close(self) -> None:
        with self.cv:
            self.closed = True
            self.cv.notify()
        self._thread.join(5)
        self.out.close()

    def _run(self) -> None:
        while True:
            with self.cv:
                while not self.closed and (not self.heap or self.heap[0][0] > time.monotonic()):
                    self.cv.wait(timeout=self.heap[0][0] - time.monotonic() if self.heap else None)
                if self.closed:
                    return
                _, _, channel, pitch, velocity = heapq.heappop(self.heap)
            self.out.send(channel, pitch, velocity)
            self.played += velocity > 0
