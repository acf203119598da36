"""python -m comagen audio-convert: both ways on a real render, and one line with exit 2 for each bad input."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from comagen.music.midi import GRID_BPM, load_score, to_grid
from comagen.render.audio import render_audio

ROOT = Path(__file__).resolve().parents[1]


def convert(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "comagen", "audio-convert", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def rendered(validation_files: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    samples, rate = render_audio(to_grid(load_score(validation_files[0]), 480).clip(0, int(480 * GRID_BPM / 60 * 3)))
    path = tmp_path_factory.mktemp("render") / "render.wav"
    soundfile.write(str(path), samples, rate)
    return path


def test_both_ways(rendered: Path, validation_files: list[Path], tmp_path: Path) -> None:
    beats, back = tmp_path / "a.beats", tmp_path / "back.wav"
    assert convert("--wav", str(rendered), "--midi", str(validation_files[0]), "--out", str(beats)).returncode == 0
    assert convert("--beats", str(beats), "--out", str(back)).returncode == 0
    original, again = soundfile.read(str(rendered))[0], soundfile.read(str(back))[0]
    assert again.shape[1] == 2 and 0 < len(original) - len(again) < 44100 * 0.5  # whole beats only
    assert np.corrcoef(original[: len(again), 0], again[:, 0])[0, 1] > 0.99


def _bad_inputs(tmp: Path, rendered: Path) -> dict[str, list[str]]:
    (tmp / "empty.wav").write_bytes(b"")
    (tmp / "text.wav").write_text("not audio")
    soundfile.write(str(tmp / "long.wav"), np.zeros(21600 * 2, "int16"), 2)  # 6 h at 2 Hz: a small file
    soundfile.write(str(tmp / "eight.wav"), np.zeros((100, 8), "float32"), 8000)
    return {
        "empty": ["--wav", str(tmp / "empty.wav"), "--bpm", "120"],
        "not wav": ["--wav", str(tmp / "text.wav"), "--bpm", "120"],
        "6 hours": ["--wav", str(tmp / "long.wav"), "--bpm", "120"],
        "8 channels": ["--wav", str(tmp / "eight.wav"), "--bpm", "120"],
        "bpm 0": ["--wav", str(rendered), "--bpm", "0"],
        "bpm 10000": ["--wav", str(rendered), "--bpm", "10000"],
    }


def test_bad_inputs_get_one_line(rendered: Path, tmp_path: Path) -> None:
    for name, args in _bad_inputs(tmp_path, rendered).items():
        done = convert(*args, "--out", str(tmp_path / "o.beats"))
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:"), name
