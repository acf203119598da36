"""Note F1 of audio (#25) on a real FluidSynth render of MAESTRO: basic-pitch's shipped ONNX model hears the
notes the render was made from (F1 far above the same audio scored against another piece's MIDI), the
bench's recon section reports note F1 and mel distance for the shipped codec, and bad input is one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soxr
import torch

from comagen.audio.beatfile import write_beats
from comagen.audio.convert import beat_grid, to_beats
from comagen.errors import AudioError
from comagen.model.vqvae import mel_distance
from comagen.music.midi import GRID_BPM, load_score, to_grid
from comagen.render.audio import render_audio
from comagen.training.continuation import Notes
from comagen.training.transcribe import midi_notes, note_scores, source_midi, transcribe

ROOT = Path(__file__).resolve().parents[1]
SECONDS = 6.0


@pytest.fixture(scope="module")
def render(validation_files: list[Path]) -> tuple[np.ndarray, int]:
    """The first 6 s of a real validation performance, rendered as training/render_audio.py does (mono)."""
    score = to_grid(load_score(validation_files[2]), 480).clip(0, int(480 * GRID_BPM / 60 * SECONDS))
    samples, rate = render_audio(score)
    return samples.mean(axis=1), rate


def test_transcription_matches_its_own_midi(render: tuple[np.ndarray, int], validation_files: list[Path]) -> None:
    wave, rate = render
    heard = transcribe(wave[: int(SECONDS * rate)], rate)
    own = note_scores(midi_notes(validation_files[2], SECONDS), heard)
    wrong = note_scores(midi_notes(validation_files[3], SECONDS), heard)
    assert len(heard.time) > 10 and heard.seconds == pytest.approx(SECONDS, abs=1e-3)
    assert own["f1"] > 0.35 and wrong["f1"] < 0.1, (own, wrong)  # measured here: 0.50 and 0.02
    # at the codec's 8 kHz the transcriber still hears most notes (the bench's ceiling row)
    low = transcribe(soxr.resample(wave, rate, 8000)[: int(SECONDS * 8000)], 8000)
    low_f1 = note_scores(midi_notes(validation_files[2], SECONDS), low)["f1"]
    assert low_f1 > 0.35, low_f1  # 0.51


def test_note_scores_edges() -> None:
    empty = Notes(*(np.zeros(0) for _ in range(4)), 1.0)
    one = Notes(np.array([0.5]), np.array([0.2]), np.array([60.0]), np.array([80.0]), 1.0)
    late = Notes(np.array([0.6]), np.array([0.2]), np.array([60.0]), np.array([80.0]), 1.0)
    assert note_scores(empty, empty)["f1"] == 1.0 and note_scores(one, empty)["f1"] == 0.0
    assert note_scores(one, one)["f1"] == 1.0 and note_scores(one, late)["f1"] == 0.0  # 100 ms late: no match


def test_mel_distance(render: tuple[np.ndarray, int]) -> None:
    wave = torch.from_numpy(render[0][render[1]:render[1] + 8000].astype(np.float32))  # second 1: notes sound
    assert mel_distance(wave, wave, 8000) == 0.0
    assert mel_distance(wave * 0.5, wave, 8000) == pytest.approx(np.log10(2), abs=0.02)  # half the level


def test_bad_input_is_one_line(maestro_dir: Path) -> None:
    with pytest.raises(AudioError, match="no MIDI file of that name"):
        source_midi(maestro_dir, "not-a-maestro-take")
    with pytest.raises(AudioError, match="non-empty mono waveform"):
        transcribe(np.zeros((10, 2)), 8000)


def test_bench_recon_reports_note_f1(render: tuple[np.ndarray, int], validation_files: list[Path],
                                     maestro_dir: Path, tmp_path: Path) -> None:
    """bench/melformer.py --section recon on the shipped codec: note F1 and mel distance in every row, the
    original render (the ceiling) far above the same-bitrate mu-law, whose 36 Hz keeps no note."""
    samples, rate = render
    (tmp_path / "validation").mkdir()
    name = validation_files[2].stem + ".beats"
    write_beats(tmp_path / "validation" / name,
                to_beats(samples[:, None], rate, beat_grid(len(samples) / rate, GRID_BPM), 4000))
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "melformer.py"), "--beats", str(tmp_path),
                           "--checkpoint", str(ROOT / "assets" / "checkpoints" / "melformer"), "--section", "recon",
                           "--files", "1", "--seconds", "4", "--data", str(maestro_dir), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {r["method"]: r for r in json.loads(done.stdout.strip().splitlines()[-1])["recon"]}
    assert all("note_f1" in r for r in rows.values())
    assert all("mel_distance" in r for name, r in rows.items() if "ceiling" not in name)
    assert rows["original render, 8 kHz mono (ceiling)"]["note_f1"] > 0.4
    assert rows["mu-law 8 bit at 36 Hz (288 bit/s)"]["note_f1"] == 0.0
    missing = subprocess.run([sys.executable, str(ROOT / "bench" / "melformer.py"), "--beats", str(tmp_path / "none"),
                              "--section", "recon"], capture_output=True, text=True, timeout=60)
    assert missing.returncode != 0 and missing.stderr.strip().count("\n") == 0, missing.stderr
