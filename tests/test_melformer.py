"""The melformer path (#25) at toy size on real FluidSynth renders of MAESTRO: the VQ-VAE trains through
training/train.py's trainer and its loss falls, codebook use reaches TensorBoard, encode/decode shapes and
the codebook lookup, the KV-cached step equals the full forward, and audio-continue writes a WAV of the
asked length; bad input is one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from comagen.audio.beatfile import write_beats
from comagen.audio.convert import beat_grid, to_beats
from comagen.bundle.audio import load_audio_bundle
from comagen.cli import main
from comagen.model import ModelConfig
from comagen.model.vqvae import GAIN
from comagen.music.midi import GRID_BPM, load_score, to_grid
from comagen.render.audio import render_audio
from comagen.training.config import TrainConfig
from comagen.training.trainer import train

ROOT = Path(__file__).resolve().parents[1]
SPB = 1000  # a toy codec rate: 4 codes per beat with strides 2, 5, 5, 5
CODEC = {"arch": "vqvae", "dim": 16, "samples_per_beat": SPB, "codec_channels": 8, "codebook_size": 32}
RUN = {"seq_len": 2, "batch_size": 4, "lr": 3e-3, "warmup_steps": 2, "weight_decay": 0.0, "eval_files": 1,
       "log_every": 1, "save_every": 0, "threads": 1, "progress": False}


def _render(midi: Path, seconds: float) -> tuple[np.ndarray, int]:
    return render_audio(to_grid(load_score(midi), 480).clip(0, int(480 * GRID_BPM / 60 * seconds)))


@pytest.fixture(scope="module")
def renders(train_file: Path, validation_files: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Beat files of a real train and validation render (as training/render_audio.py writes them) and a prompt WAV."""
    root = tmp_path_factory.mktemp("beats")
    for split, midi, seconds in (("train", train_file, 12), ("validation", validation_files[0], 4)):
        samples, rate = _render(midi, seconds)
        (root / split).mkdir()
        write_beats(root / split / "a.beats", to_beats(samples, rate, beat_grid(len(samples) / rate, GRID_BPM), SPB))
    samples, rate = _render(validation_files[1], 2.2)
    soundfile.write(str(root / "prompt.wav"), samples, rate)
    return root


@pytest.fixture(scope="module")
def trained(renders: Path) -> tuple[Path, list]:
    """A toy codec, then a toy melformer over its codes, both by the project's trainer."""
    codec = train(ModelConfig.from_dict(CODEC),
                  TrainConfig(**RUN, data=str(renders), out=str(renders / "vqvae"), max_steps=14, eval_every=14))
    llama = ModelConfig.from_dict({"arch": "llama", "dim": 32, "depth": 2, "heads": 4, "kv_heads": 2, "dropout": 0.0})
    melformer = {**RUN, "seq_len": 16, "lr": 1e-3}
    train(llama, TrainConfig(**melformer, data=str(renders), out=str(renders / "melformer"), max_steps=4,
                             eval_every=4, codec=str(renders / "vqvae" / "best")))
    return renders, codec.losses


def test_vqvae_trains_and_logs_its_codebook(trained: tuple[Path, list]) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root, losses = trained
    values = [v for _, v in losses]
    assert np.mean(values[-3:]) < np.mean(values[:3])
    events = EventAccumulator(str(root / "vqvae" / "tensorboard"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"codebook/used_share", "codebook/dead_codes", "codebook/perplexity", "val/snr_db"} <= set(tags)
    assert 0 < events.Scalars("codebook/used_share")[-1].value <= 1
    assert (root / "vqvae" / "best" / "MODEL_CARD.md").is_file()


def test_encode_decode_shapes_and_codebook_lookup(trained: tuple[Path, list]) -> None:
    codec = load_audio_bundle(trained[0] / "vqvae" / "best").models["codec"]
    wave = torch.randn(2, 3 * SPB) * 0.1
    codes = codec.encode(wave)
    assert codes.shape == (2, 3 * codec.codes_per_beat) and codes.dtype == torch.long
    assert int(codes.max()) < CODEC["codebook_size"]
    assert codec.decode(codes).shape == (2, 3 * SPB)
    looked_up = codec.quantizer.codebook[codes]  # the codebook rows, through the library's projections
    by_hand = codec.decoder(codec.quantizer.project_out(looked_up).transpose(1, 2))[:, 0] / GAIN
    torch.testing.assert_close(codec.decode(codes), by_hand)


def test_cached_step_equals_full_forward(trained: tuple[Path, list]) -> None:
    melformer = load_audio_bundle(trained[0] / "melformer" / "best", need=("codec", "melformer")).models["melformer"]
    tokens = torch.randint(0, CODEC["codebook_size"], (1, 12))
    composer = torch.zeros(1, dtype=torch.long)
    full = melformer(tokens, composer)
    logits, state = melformer.prefill(tokens[:, :5], composer, melformer.new_state(1))
    steps = [logits]
    for t in range(5, 12):
        logits, state = melformer.step(tokens[:, t], composer, state)
        steps.append(logits)
    torch.testing.assert_close(torch.stack(steps[:-1], 1), full[:, 4:11], atol=1e-5, rtol=1e-4)


def test_audio_continue_writes_the_asked_length(trained: tuple[Path, list]) -> None:
    root = trained[0]
    out = root / "continued.wav"
    done = subprocess.run([sys.executable, "-m", "comagen", "audio-continue", "--checkpoint",
                           str(root / "melformer" / "best"), "--wav", str(root / "prompt.wav"), "--beats", "3",
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    samples, rate = soundfile.read(str(out))
    prompt = soundfile.info(str(root / "prompt.wav"))
    assert rate == prompt.samplerate and samples.shape[1] == 2
    whole_beats = int(prompt.frames / rate * 2)  # 120 bpm
    assert abs(len(samples) - (whole_beats + 3) * 0.5 * rate) <= 1
    assert np.abs(samples[-int(1.5 * rate):]).max() > 0


def test_bad_inputs_get_one_line(trained: tuple[Path, list], tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    root = trained[0]
    (tmp_path / "empty.wav").write_bytes(b"")
    soundfile.write(str(tmp_path / "long.wav"), np.zeros(21600 * 2, "int16"), 2)  # 6 h at 2 Hz: a small file
    soundfile.write(str(tmp_path / "eight.wav"), np.zeros((100, 8), "float32"), 8000)
    prompt, bundle = str(root / "prompt.wav"), str(root / "melformer" / "best")
    cases = {
        "empty": ["--wav", str(tmp_path / "empty.wav")],
        "6 hours": ["--wav", str(tmp_path / "long.wav")],
        "8 channels": ["--wav", str(tmp_path / "eight.wav")],
        "bpm 0": ["--wav", prompt, "--bpm", "0"],
        "bpm 10000": ["--wav", prompt, "--bpm", "10000"],
        "beats 0": ["--wav", prompt, "--beats", "0"],
        "codec only": ["--wav", prompt, "--checkpoint", str(root / "vqvae" / "best")],
    }
    for name, args in cases.items():
        argv = ["audio-continue", "--checkpoint", bundle, "--beats", "2", "--out", str(tmp_path / "o.wav"), *args]
        code = main(argv)
        lines = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error:"), name
