"""The Audio tab without a browser (studio.audio_tab, #25): a real MAESTRO prompt rendered by FluidSynth, or a
real render uploaded as a WAV, continued by the shipped melformer bundle; the audio grows by one beat per
frame, and the last frame brings the spectrogram and a WAV of prompt plus the asked beats. Bad input
(a 0-byte or foreign file, 6 hours, 8 channels, a BPM of 0 or 10,000, an empty prompt) is one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from comagen.bundle.checkpoint import Bundle
from comagen.generation.prompt import Prompt, load_prompt
from comagen.music.midi import load_score, to_grid
from comagen.render.audio import render_audio
from studio import audio_tab

pytestmark = pytest.mark.skipif(not (audio_tab.AUDIO_CHECKPOINT / "melformer.safetensors").is_file(),
                                reason="no shipped melformer checkpoint")


@pytest.fixture(scope="module")
def prompt(default_bundle: Bundle, validation_files: list[Path]) -> Prompt:
    return load_prompt(default_bundle.tokenizer, validation_files[0], seconds=4)


def _compose(bundle: Bundle, prompt: Prompt) -> object:
    return lambda: (bundle, prompt, "validation")


def test_the_compose_prompt_is_continued_beat_by_beat(default_bundle: Bundle, prompt: Prompt) -> None:
    frames = list(audio_tab.tab_stream(None, None, 4, 3, _compose(default_bundle, prompt)))
    assert len(frames) == 1 + 4 + 1, [f.status for f in frames]  # encoding, a frame per beat, done
    rate, first = frames[0].audio
    assert rate == audio_tab.RATE and len(first) == round(prompt.seconds * rate)  # whole beats of the prompt
    beat = round(0.5 * rate)  # 120 bpm, the grid every score is timed on
    for k, frame in enumerate(frames[1:5], start=1):
        assert frame.status.startswith(f"Beat {k}/4")
        assert abs(len(frame.audio[1]) - len(first) - k * beat) <= k
        assert frame.spectrogram is None and frame.wav is None
    done = frames[-1]
    assert done.status.startswith("Done: 4 beats")
    assert done.spectrogram.ndim == 3 and done.spectrogram.shape[2] == 3
    samples, wav_rate = soundfile.read(str(done.wav))
    assert wav_rate == rate and len(samples) == len(done.audio[1]) and samples.ndim == 1
    assert np.abs(samples[len(first):]).max() > 1e-3  # the continuation is not silence


def test_an_uploaded_wav_is_continued_at_its_tempo(validation_files: list[Path], tmp_path: Path) -> None:
    samples, rate = render_audio(to_grid(load_score(validation_files[1]), 480).clip(0, 480 * 6))  # 3 s at 120
    soundfile.write(str(tmp_path / "take.wav"), samples[: round(2.9 * rate)], rate)
    frames = list(audio_tab.tab_stream(str(tmp_path / "take.wav"), 100.0, 2, 0, lambda: pytest.fail("no")))
    done = frames[-1]
    assert done.status.startswith("Done: 2 beats"), done.status
    whole = int(2.9 * 100 / 60) * 0.6  # the prompt's whole beats at 100 bpm
    assert done.audio[0] == rate
    assert abs(len(done.audio[1]) - round((whole + 2 * 0.6) * rate)) <= 2
    assert soundfile.info(str(done.wav)).samplerate == rate


def test_bad_input_is_one_line(default_bundle: Bundle, prompt: Prompt, tmp_path: Path) -> None:
    good = tmp_path / "good.wav"
    soundfile.write(str(good), np.zeros((rate := 8000, 1), "float32"), rate)
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "text.wav").write_text("not audio")
    soundfile.write(str(tmp_path / "long.wav"), np.zeros(21600 * 2, "int16"), 2)  # 6 h at 2 Hz: a small file
    soundfile.write(str(tmp_path / "eight.wav"), np.zeros((100, 8), "float32"), 8000)
    soundfile.write(str(tmp_path / "short.wav"), np.zeros((100, 1), "float32"), 8000)
    cases = {"empty": (tmp_path / "empty.wav", 120, 4), "not wav": (tmp_path / "text.wav", 120, 4),
             "6 hours": (tmp_path / "long.wav", 120, 4), "8 channels": (tmp_path / "eight.wav", 120, 4),
             "bpm 0": (good, 0, 4), "bpm 10000": (good, 10000, 4), "under a beat": (tmp_path / "short.wav", 120, 4),
             "0 beats": (good, 120, 0), "too many beats": (good, 120, audio_tab.TAB_MAX_BEATS + 1)}
    for name, (path, bpm, beats) in cases.items():
        frames = list(audio_tab.tab_stream(str(path), bpm, beats, 0, lambda: pytest.fail("no")))
        assert len(frames) == 1 and frames[0].status.startswith("**Error:**"), (name, frames)
        assert "\n" not in frames[0].status and frames[0].audio is None, name
    empty = list(audio_tab.tab_stream(None, None, 4, 0, _compose(default_bundle, Prompt.empty())))
    assert len(empty) == 1 and "prompt is empty" in empty[0].status
