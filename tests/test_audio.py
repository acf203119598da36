"""FluidSynth rendering and soundfont lookup, on real MAESTRO playing and crafted pedal cases; the
soundfont loaded once and shared by renders that never hear each other; the player's compressed file."""

from __future__ import annotations

import io
import sys
import threading
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile
import symusic

from comagen.render import soundfont
from comagen.render.audio import (
    PLAYER_SUFFIX,
    AudioUnavailableError,
    render_audio,
    render_files,
    shared_soundfont,
    wav_bytes,
)
from comagen.render.soundfont import SoundfontNotFoundError, find_soundfont

RATE = 22050


@pytest.fixture(scope="module")
def excerpt(validation_files: list[Path]) -> symusic.Score:
    """About 8 s of a real validation performance, moved to start at time 0."""
    score = symusic.Score(validation_files[0]).to("second")
    start = score.start() + 5.0
    return score.clip(start, start + 8.0, clip_end=True).shift_time(-start)


def one_note(pedal: str | None) -> symusic.Score:
    """A 0.25 s middle C, optionally held by sustain as CC64 controls or as a Track.pedal."""
    score = symusic.Score(480)
    track = symusic.Track(program=0)
    track.notes.append(symusic.Note(0, 240, 60, 90))
    if pedal == "cc":
        track.controls.append(symusic.ControlChange(0, 64, 127))
        track.controls.append(symusic.ControlChange(4 * 480, 64, 0))
    elif pedal == "pedal":
        track.pedals.append(symusic.Pedal(0, 4 * 480))
    score.tracks.append(track)
    return score


def rms(samples: np.ndarray, start: float, end: float, rate: int) -> float:
    return float(np.sqrt(np.mean(samples[round(start * rate): round(end * rate)] ** 2)))


def test_real_excerpt_renders_sound_of_the_right_length(excerpt: symusic.Score) -> None:
    samples, rate = render_audio(excerpt, sample_rate=RATE)
    notes = excerpt.tracks[0].notes.numpy()
    controls = excerpt.tracks[0].controls.numpy()
    last_event = max((notes["time"] + notes["duration"]).max(), controls["time"].max())
    assert rate == RATE and samples.dtype == np.float32 and samples.shape[1] == 2
    assert abs(len(samples) / rate - (last_event + 1.0)) < 0.05
    assert rms(samples, 0.0, last_event, rate) > 0.02
    assert np.abs(samples).max() <= 0.9 + 1e-6


def test_wav_bytes_round_trip(excerpt: symusic.Score) -> None:
    samples, rate = render_audio(excerpt, sample_rate=RATE)
    with wave.open(io.BytesIO(wav_bytes(samples, rate))) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (2, 2, RATE)
        assert wav.getnframes() == len(samples)


def test_the_soundfont_is_loaded_once_and_a_render_never_hears_the_one_before(excerpt: symusic.Score) -> None:
    shared = shared_soundfont(find_soundfont())
    served = shared.renders
    first, _ = render_audio(excerpt, sample_rate=RATE)
    render_audio(one_note("cc"), sample_rate=RATE)  # a held note, still ringing when its render ends
    again, _ = render_audio(excerpt, sample_rate=RATE)
    assert shared_soundfont(find_soundfont()) is shared and shared.renders == served + 3
    assert np.array_equal(first, again)


def test_overlapping_renders_give_the_sequential_samples(excerpt: symusic.Score) -> None:
    scores = [excerpt, one_note("pedal"), excerpt, one_note(None)]
    sequential = [render_audio(score, sample_rate=RATE)[0] for score in scores]
    start = threading.Barrier(len(scores))  # every thread asks for its render at the same moment

    def render(score: symusic.Score) -> np.ndarray:
        start.wait()
        return render_audio(score, sample_rate=RATE)[0]

    with ThreadPoolExecutor(len(scores)) as pool:
        overlapped = list(pool.map(render, scores))
    for alone, together in zip(sequential, overlapped, strict=True):
        assert np.array_equal(alone, together)


def test_the_player_file_decodes_to_the_wav_and_is_much_smaller(excerpt: symusic.Score, tmp_path: Path) -> None:
    wav, player = render_files(excerpt, [tmp_path / "take.wav", tmp_path / f"take{PLAYER_SUFFIX}"], sample_rate=RATE)
    pcm, _ = soundfile.read(wav, dtype="float32")
    decoded, rate = soundfile.read(player, dtype="float32")
    assert rate == RATE and decoded.shape[1] == 2
    assert abs(len(decoded) - len(pcm)) <= 0.005 * RATE
    n = min(len(decoded), len(pcm))
    assert np.corrcoef(decoded[:n].ravel(), pcm[:n].ravel())[0, 1] > 0.95  # the same music, lossily (0.989 seen)
    assert player.stat().st_size < wav.stat().st_size / 5


@pytest.mark.parametrize("pedal", ["cc", "pedal"])
def test_sustain_keeps_a_short_note_ringing(pedal: str) -> None:
    dry, rate = render_audio(one_note(None), sample_rate=RATE)
    held, _ = render_audio(one_note(pedal), sample_rate=RATE)
    # Compare after the 0.25 s note ends, relative to each render's own attack (renders are
    # peak-normalised, so absolute levels are not comparable).
    dry_ratio = rms(dry, 0.6, 1.0, rate) / rms(dry, 0.0, 0.2, rate)
    held_ratio = rms(held, 0.6, 1.0, rate) / rms(held, 0.0, 0.2, rate)
    assert held_ratio > 0.2
    assert held_ratio > 20 * dry_ratio
    assert len(held) / rate == pytest.approx(2.0 + 1.0, abs=0.01)  # pedal up at 2 s + tail


def test_pretty_midi_soundfont_renders() -> None:
    bundled = soundfont.pretty_midi_soundfont()
    assert bundled is not None
    samples, rate = render_audio(one_note(None), sample_rate=RATE, soundfont=bundled)
    assert rms(samples, 0.0, 0.2, rate) > 0.05


def test_missing_fluidsynth_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "fluidsynth", None)  # makes `import fluidsynth` fail
    with pytest.raises(AudioUnavailableError, match="libfluidsynth3"):
        render_audio(one_note(None))


def test_soundfont_env_var_comes_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chosen = tmp_path / "mine.sf2"
    chosen.write_bytes(b"RIFF")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "shipped.sf2").write_bytes(b"RIFF")
    monkeypatch.setenv("COMAGEN_SOUNDFONT_DIR", str(repo))
    monkeypatch.setenv("COMAGEN_SOUNDFONT", str(chosen))
    assert find_soundfont() == chosen
    monkeypatch.setenv("COMAGEN_SOUNDFONT", str(tmp_path / "missing.sf2"))
    with pytest.raises(SoundfontNotFoundError, match="COMAGEN_SOUNDFONT"):
        find_soundfont()


def test_soundfont_fallback_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COMAGEN_SOUNDFONT", raising=False)
    repo = tmp_path / "repo"
    repo.mkdir()
    system = tmp_path / "FluidR3_GM.sf2"
    system.write_bytes(b"RIFF")
    monkeypatch.setenv("COMAGEN_SOUNDFONT_DIR", str(repo))
    monkeypatch.setattr(soundfont, "SYSTEM_SOUNDFONTS", (tmp_path / "absent.sf2", system))
    assert find_soundfont() == system
    (repo / "b.sf2").write_bytes(b"RIFF")
    (repo / "a.sf2").write_bytes(b"RIFF")
    assert find_soundfont() == repo / "a.sf2"

    for path in repo.iterdir():
        path.unlink()
    monkeypatch.setattr(soundfont, "SYSTEM_SOUNDFONTS", ())
    assert find_soundfont().name == "TimGM6mb.sf2"
    monkeypatch.setattr(soundfont, "pretty_midi_soundfont", lambda: None)
    with pytest.raises(SoundfontNotFoundError):
        find_soundfont()
