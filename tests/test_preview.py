"""A result's audio and roll stop where its music does, while its MIDI keeps the user's file whole:
a note held for an hour before the cut is the user's in the download, and a few seconds of the
preview (real FluidSynth render), never an hour of audio."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import symusic
from conftest import small_conformer_bundle

import studio
from bench.load_inputs import hour_note
from comagen.generation.settings import Settings
from comagen.music.preview import until

TAIL_SECONDS = 1.0  # the render's release after the last event (render_files' default)


def _held_score() -> symusic.Score:
    """One track at 480 ticks a beat, 120 bpm: a note from 0 to 100 s, one from 1 to 2 s, one at 20 s,
    sustain down at 0.5 s and up at 100 s, and a pedal from 0.5 to 100 s."""
    score = symusic.Score(480)
    track = symusic.Track("piano", 0, False)
    for time_, duration, pitch in ((0, 96_000, 60), (960, 960, 62), (19_200, 480, 64)):
        track.notes.append(symusic.Note(time_, duration, pitch, 80))
    track.controls.extend([symusic.ControlChange(480, 64, 127), symusic.ControlChange(96_000, 64, 0)])
    track.pedals.append(symusic.Pedal(480, 95_520))
    score.tracks.append(track)
    return score


def test_until_ends_what_sounds_at_the_end_and_drops_what_comes_after() -> None:
    cut = until(_held_score(), 4.0).tracks[0]
    notes = cut.notes.numpy()
    assert np.allclose(notes["time"], [0.0, 1.0]) and np.allclose(notes["duration"], [4.0, 1.0])
    assert np.allclose(cut.pedals.numpy()["duration"], [3.5])
    assert cut.controls.numpy()["time"].tolist() == [0.5]  # the release at 100 s is past the end


def test_an_hour_long_note_is_downloaded_whole_and_previewed_for_seconds(tmp_path: Path) -> None:
    bundle = small_conformer_bundle(["Bach"])
    upload = tmp_path / "hour_note.mid"
    upload.write_bytes(hour_note())
    prompt, name = studio.resolve_prompt(bundle, upload, {}, None, 4)
    request = studio.app_request(bundle, Settings(seconds=4, seed=1), False)
    final = list(studio.stream(bundle, prompt, request, name, live="off"))[-1]
    take, shown = final.take, final.results[0]

    midi = symusic.Score.from_midi(shown.midi.read_bytes())
    assert midi.tracks[0].notes[0].duration == 480 * 2 * 3600  # the user's note, as written
    end = bundle.tokenizer.decode_ids(take.prompt.ids + take.rows[0]).to("second").end()
    assert prompt.seconds < end < 60
    with wave.open(str(shown.wav)) as audio:
        assert audio.getnframes() == round(end * audio.getframerate()) + round(TAIL_SECONDS * audio.getframerate())
