"""Shared fixtures: the real MAESTRO folder beside the project, small real files from it, and a small
random conformer bundle."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from comagen.bundle.checkpoint import Bundle, load_bundle
from comagen.bundle.composers import Composers
from comagen.generation.prompt import Prompt, load_prompt
from comagen.model import ModelConfig, build_model
from comagen.music.tokenizer import PianoTokenizer

ROOT = Path(__file__).resolve().parents[1]
MAESTRO = Path(os.environ.get("COMAGEN_MAESTRO_DIR", ROOT.parent / "shared" / "data" / "maestro"))


def maestro_rows(split: str) -> list[dict]:
    with (MAESTRO / "maestro-v3.0.0.csv").open(newline="", encoding="utf-8") as fh:
        return [r for r in csv.DictReader(fh) if r["split"] == split]


@pytest.fixture(scope="session")
def maestro_dir() -> Path:
    if not (MAESTRO / "maestro-v3.0.0.csv").is_file():
        pytest.fail(f"MAESTRO not found at {MAESTRO}; set COMAGEN_MAESTRO_DIR")
    return MAESTRO


@pytest.fixture(scope="session")
def validation_files(maestro_dir: Path) -> list[Path]:
    """A few short validation performances (shortest first keeps the suite fast)."""
    rows = sorted(maestro_rows("validation"), key=lambda r: float(r["duration"]))
    return [maestro_dir / r["midi_filename"] for r in rows[:6]]


@pytest.fixture(scope="session")
def train_file(maestro_dir: Path) -> Path:
    rows = sorted(maestro_rows("train"), key=lambda r: float(r["duration"]))
    return maestro_dir / rows[len(rows) // 4]["midi_filename"]


@pytest.fixture(scope="session")
def default_bundle() -> Bundle:
    """The shipped `default` checkpoint, loaded once."""
    return load_bundle(ROOT / "assets" / "checkpoints" / "default")


@pytest.fixture(scope="session")
def default_prompt(default_bundle: Bundle, validation_files: list[Path]) -> Prompt:
    """The first 8 s of a real validation file, as `default`'s tokens."""
    return load_prompt(default_bundle.tokenizer, validation_files[0], seconds=8)


def small_conformer_bundle(composers: list[str], widen: bool = False) -> Bundle:
    """A small random conformer bundle (seed 0), thousands of tokens in seconds. `widen` draws larger
    weights than the 0.02 init, so that context and composer matter as in a trained model."""
    tokenizer = PianoTokenizer()
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=tokenizer.vocab_size, pad_id=tokenizer.pad_id, dim=64, depth=2, heads=2,
                      windows=[16, 32], conv_kernel=7, ff_mult=2, dropout=0.0, max_seq_len=256)
    model = build_model(cfg).eval()
    if widen:
        with torch.no_grad():
            for name, param in model.named_parameters():
                if param.dim() == 2:
                    param.normal_(0.0, 1.0 if "emb" in name else 2.0 / param.shape[1] ** 0.5)
    return Bundle(ROOT, model, cfg, tokenizer, Composers(composers))


@pytest.fixture(scope="session")
def gallery() -> dict:
    """The app's prompt gallery (the shipped prompts, read once for every test that picks one)."""
    import studio

    return studio.build_gallery()


@pytest.fixture(scope="session")
def shipped_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of one app server on the shipped checkpoint, shared by the endpoint and browser tests
    (each browser page is a session of its own); it starts once, not once per test file."""
    from app_support import APP_START_TIMEOUT_S, app_checkpoint

    from studio.appserver import serve

    tmp = tmp_path_factory.mktemp("shipped-app")
    with serve(app_checkpoint(tmp), tmp / "app.log", timeout=APP_START_TIMEOUT_S) as server:
        yield server.url
