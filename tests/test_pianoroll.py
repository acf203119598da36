"""The piano-roll transformer: frames round trip on real MAESTRO files, the streaming step equals the
full forward (through the slide past the memory), the TorchScript copy equals eager, and a tiny
model trains, saves, loads and generates a take that decodes and plays."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from comagen.bundle.pianoroll import check_torchscript, load_pianoroll, save_pianoroll
from comagen.generation.pianoroll import FrameSampling, draw_frame, generate_frames, key_probabilities
from comagen.model import ModelConfig, build_model
from comagen.model.positional import sinusoidal_table
from comagen.music.frames import FrameSettings, frames_to_score, note_spans, score_to_frames
from comagen.music.midi import PIANO_HIGH, PIANO_LOW, load_score
from comagen.training.config import TrainConfig
from comagen.training.data import Piece
from comagen.training.frame_data import key_frequency, load_frame_pieces
from comagen.training.trainer import train

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = FrameSettings()  # the chosen length: 1/8 beat, 62.5 ms


def tiny(memory: int = 16) -> ModelConfig:
    return ModelConfig(arch="pianoroll", position="sinusoidal", dim=32, depth=2, heads=2, ff_mult=2, dropout=0.0,
                       max_seq_len=memory)


def test_frames_round_trip_within_the_frame_length(validation_files: list[Path]) -> None:
    for path in validation_files[:3]:
        score = load_score(path)
        frames = score_to_frames(score, SETTINGS)
        back = frames_to_score(frames, SETTINGS)
        assert np.array_equal(score_to_frames(back, SETTINGS), frames)  # frames -> notes -> frames is exact
        lost = 1 - back.note_num() / score.note_num()
        assert 0 <= lost < 0.03  # bench/frames.py: 0.95 % merged at this length on validation
        original = score.to("second").tracks[0].notes.numpy()
        decoded = back.to("second").tracks[0].notes.numpy()
        for key in np.unique(decoded["pitch"])[:20]:
            ref = np.sort(original["time"][original["pitch"] == key])
            got = decoded["time"][decoded["pitch"] == key]
            nearest = np.abs(got[:, None] - ref[None, :]).min(axis=1)
            assert nearest.max() <= SETTINGS.seconds_per_frame / 2 + 1e-6


def test_gap_keeps_a_restruck_key_apart_and_merge_does_not(validation_files: list[Path]) -> None:
    score = load_score(validation_files[0])
    gap = frames_to_score(score_to_frames(score, SETTINGS), SETTINGS).note_num()
    merged = frames_to_score(score_to_frames(score, FrameSettings(restrike="merge")), SETTINGS).note_num()
    frames, onsets = score_to_frames(score, SETTINGS, onsets=True)
    exact = frames_to_score(frames, SETTINGS, onsets).note_num()
    assert merged < gap <= exact <= score.note_num()
    assert note_spans(score, SETTINGS)[:, 0].min() >= PIANO_LOW


def test_streaming_step_equals_the_full_forward_through_the_slide() -> None:
    torch.manual_seed(0)
    model = build_model(tiny(16)).eval()
    frames = (torch.rand(2, 50, 128) < 0.1).float()
    state = model.new_state(2)
    logits, _ = model.prefill(frames[:, :5], state)
    assert torch.allclose(logits, model(frames[:, :5])[:, -1], atol=1e-5)
    start = 0
    for t in range(5, 50):
        logits, _ = model.step(frames[:, t], state)
        if t + 1 - start > 16:  # the slide: the last half memory, read again from position 0
            start = t + 1 - 8
        assert torch.allclose(logits, model(frames[:, start:t + 1])[:, -1], atol=1e-5), t


def test_torchscript_copy_equals_eager(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = build_model(tiny(32)).eval()
    save_pianoroll(tmp_path / "b", model, SETTINGS, summary={}, card="tiny")
    roll = (torch.rand(3, 27, 128) < 0.1).float()  # another batch and length than it was traced with
    assert check_torchscript(tmp_path / "b", model, roll) < 1e-5
    loaded = load_pianoroll(tmp_path / "b").model
    assert torch.equal(loaded(roll), model(roll))


def test_sampling_meanings() -> None:
    logits = torch.full((1, 128), 3.0)
    probs = key_probabilities(logits, FrameSampling())
    assert probs[0, :PIANO_LOW].sum() == 0 and probs[0, PIANO_HIGH + 1:].sum() == 0  # the 88 keys only
    gen = torch.Generator().manual_seed(0)
    assert draw_frame(probs, FrameSampling(top_k=10), gen).sum() <= 10  # a hand's limit
    sure = draw_frame(probs, FrameSampling(top_p=0.9), gen)  # p = 0.95 > top_p: always sounds
    assert sure[0, PIANO_LOW:PIANO_HIGH + 1].all()
    faint = key_probabilities(torch.full((1, 128), -4.0), FrameSampling())
    assert draw_frame(faint, FrameSampling(top_p=0.95), gen).sum() == 0  # p = 0.018 < 1 - top_p: never


def test_the_head_starts_at_each_keys_training_frequency(validation_files: list[Path]) -> None:
    pieces = load_frame_pieces([Piece(p, "validation", "", p.stem, 0.0) for p in validation_files[:2]], SETTINGS)
    rolls = np.concatenate([p.window(0, p.frames) for p in pieces])
    frequency = key_frequency(pieces)
    assert torch.allclose(frequency, torch.from_numpy((rolls.sum(0) + 1) / (len(rolls) + 2)).float())
    model = build_model(tiny())
    model.set_key_prior(frequency)
    assert torch.allclose(torch.sigmoid(model.head.bias), frequency.clamp(1e-6, 1 - 1e-6), atol=1e-6)


def test_gpt2_can_take_sinusoidal_positions() -> None:
    model = build_model(ModelConfig(arch="gpt2", position="sinusoidal", dim=32, depth=1, heads=2, max_seq_len=16))
    assert not model.pos_emb.weight.requires_grad
    assert torch.equal(model.pos_emb.weight, sinusoidal_table(16, 32))


def test_tiny_model_trains_saves_loads_and_generates(tmp_path: Path, maestro_dir: Path,
                                                      validation_files: list[Path]) -> None:
    cfg = TrainConfig(data=str(maestro_dir), out=str(tmp_path / "run"), train_files=2, seq_len=32, batch_size=2,
                      grad_accum=2, schedule="onecycle", onecycle_peak=0.1, max_steps=3, eval_every=3,
                      eval_files=1, eval_max_tokens=64, save_every=0, progress=False, threads=1)
    result = train(tiny(32), cfg)
    assert result.step == 3 and result.best_nats_per_frame is not None
    bundle = load_pianoroll(tmp_path / "run" / "best")
    assert (tmp_path / "run" / "best" / "model.ts").is_file()
    assert check_torchscript(tmp_path / "run" / "best", bundle.model) < 1e-5
    prompt = score_to_frames(load_score(validation_files[0]), SETTINGS)[:40].astype(np.float32)
    take = np.stack(list(generate_frames(bundle.model, prompt, 48, FrameSampling(), seed=0, form="AABA",
                                         section_frames=12, blend_frames=4)))
    assert take.shape == (48, 128) and not take[:, :PIANO_LOW].any() and not take[:, PIANO_HIGH + 1:].any()
    out = tmp_path / "take.mid"
    done = subprocess.run([sys.executable, "-m", "comagen", "generate", "--checkpoint", str(tmp_path / "run" / "best"),
                           "--prompt", str(validation_files[0]), "--prompt-seconds", "4", "--seconds", "3",
                           "--form", "AABA", "--section-bars", "1", "--top-k", "10", "--out", str(out), "--json"],
                          cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(done.stdout.strip().splitlines()[-1])["frames"] == 4 * 32  # AABA, one 32-frame bar each
    assert load_score(out).note_num() > 0  # the prompt's notes at least: the take decodes and plays


def test_a_stopped_run_resumes_where_it_stopped(tmp_path: Path, maestro_dir: Path) -> None:
    """The loop it shares with the audio runs (training/loop.py): stopped after 2 of 4 steps and resumed
    from `last`, the run ends where an uninterrupted one does, with the same losses."""
    def cfg(out: str, stop_after: int = 0) -> TrainConfig:
        return TrainConfig(data=str(maestro_dir), out=str(tmp_path / out), train_files=2, seq_len=32, batch_size=2,
                           max_steps=4, eval_every=2, eval_files=1, eval_max_tokens=64, save_every=1,
                           stop_after=stop_after, progress=False, threads=1)

    whole = train(tiny(32), cfg("whole"))
    first = train(tiny(32), cfg("parts", stop_after=2))
    rest = train(tiny(32), cfg("parts"), resume=True)
    assert (first.step, rest.step, whole.step) == (2, 4, 4) and first.stopped != "max_steps"
    assert np.allclose([loss for _, loss in rest.losses], [loss for _, loss in whole.losses], atol=1e-5)
    assert rest.best_nats_per_frame == pytest.approx(whole.best_nats_per_frame, abs=1e-5)


def test_a_token_bundle_flag_is_refused_for_the_pianoroll(tmp_path: Path) -> None:
    save_pianoroll(tmp_path / "b", build_model(tiny(16)), SETTINGS, summary={}, card="tiny")
    done = subprocess.run([sys.executable, "-m", "comagen", "generate", "--checkpoint", str(tmp_path / "b"),
                           "--tokens", "10", "--out", str(tmp_path / "x.mid")], cwd=ROOT, capture_output=True,
                          text=True)
    assert done.returncode != 0 and "--seconds" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("bad", [{"arch": "pianoroll", "position": "xpos"}, {"arch": "conformer",
                                                                             "position": "sinusoidal"}])
def test_position_must_fit_the_architecture(bad: dict) -> None:
    from comagen.errors import ConfigError

    with pytest.raises(ConfigError):
        ModelConfig.from_dict(bad)


def test_cli_evaluates_and_exports_a_pianoroll_bundle(tmp_path: Path, maestro_dir: Path) -> None:
    save_pianoroll(tmp_path / "b", build_model(tiny(16)), SETTINGS, summary={}, card="tiny")
    evaluated = subprocess.run([sys.executable, "-m", "comagen", "evaluate", "--checkpoint", str(tmp_path / "b"),
                                "--data", str(maestro_dir), "--split", "validation", "--max-files", "1",
                                "--max-tokens", "40", "--json"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(evaluated.stdout.strip().splitlines()[-1])["nats_per_frame"] > 0
    exported = subprocess.run([sys.executable, "-m", "comagen", "export", "--checkpoint", str(tmp_path / "b"),
                               "--out", str(tmp_path / "ts"), "--json"], cwd=ROOT, capture_output=True, text=True,
                              check=True)
    assert json.loads(exported.stdout.strip().splitlines()[-1])["max_abs_diff"] < 1e-5
