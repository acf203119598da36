"""Beat-aligned audio: header and round trip on a real FluidSynth render of a real MAESTRO file."""

from pathlib import Path

import numpy as np
import pytest

from comagen.audio.beatfile import read_beats, write_beats
from comagen.audio.convert import beat_grid, from_beats, to_beats
from comagen.errors import AudioError
from comagen.music.midi import GRID_BPM, load_score, to_grid
from comagen.render.audio import render_audio


@pytest.fixture(scope="module")
def render(validation_files: list[Path]) -> tuple[np.ndarray, int]:
    score = to_grid(load_score(validation_files[0]), 480)
    return render_audio(score.clip(0, int(480 * GRID_BPM / 60 * 4)))


def test_round_trip_within_measured_error(render: tuple[np.ndarray, int]) -> None:
    samples, rate = render
    beats = to_beats(samples, rate, beat_grid(len(samples) / rate, GRID_BPM), 16000)
    back = from_beats(beats)
    error = samples[: len(back)] - back
    snr = 10 * np.log10((samples[: len(back)] ** 2).sum() / (error**2).sum())
    assert snr > 45.0  # measured 50-51 dB on validation renders at 16,000 per beat


def test_header_round_trip(render: tuple[np.ndarray, int], tmp_path: Path) -> None:
    samples, rate = render
    beats = to_beats(samples, rate, beat_grid(len(samples) / rate, GRID_BPM), 4000)
    write_beats(tmp_path / "a.beats", beats)
    again = read_beats(tmp_path / "a.beats")
    assert again.sample_rate == rate and again.samples_per_beat == 4000
    assert np.array_equal(again.beat_times, beats.beat_times) and np.array_equal(again.blocks, beats.blocks)


def test_truncated_and_foreign_files_are_one_line(render: tuple[np.ndarray, int], tmp_path: Path) -> None:
    samples, rate = render
    write_beats(tmp_path / "a.beats", to_beats(samples, rate, beat_grid(2.0, GRID_BPM), 4000))
    data = (tmp_path / "a.beats").read_bytes()
    (tmp_path / "b.beats").write_bytes(data[:-7])
    (tmp_path / "c.beats").write_bytes(b"RIFF" + data[4:])
    for name in ("b.beats", "c.beats"):
        with pytest.raises(AudioError):
            read_beats(tmp_path / name)


@pytest.mark.parametrize("bpm", [0.0, 10000.0])
def test_bpm_out_of_range(bpm: float) -> None:
    with pytest.raises(AudioError, match="BPM"):
        beat_grid(10.0, bpm)
