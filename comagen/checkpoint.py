"""The checkpoint bundle (DESIGN §6): a folder anyone can read without unpickling code.

    config.json        model config + tokenizer settings + training summary
    tokenizer.json     the exact tokenizer (BPE merges included)
    composers.json     conditioning id <-> composer name
    model.safetensors  weights
    MODEL_CARD.md      what it is, what it was trained on, what it measured
    trainer.pt         (training checkpoints only) optimizer, scheduler, RNG, step; loaded with
                       torch.load(weights_only=True), which refuses arbitrary objects

A bundle is written into a temporary sibling folder and renamed into place, so a crash never
leaves a half-written checkpoint where a good one was.
"""

from __future__ import annotations

import copy
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model

from comagen.data import Composers
from comagen.errors import CheckpointError, ComagenError
from comagen.model import Decoder, ModelConfig, build_model
from comagen.tokenizer import PianoTokenizer

FILES = ("config.json", "tokenizer.json", "composers.json", "model.safetensors")


@dataclass
class Bundle:
    """A loaded checkpoint: everything generation and evaluation need."""

    path: Path
    model: Decoder
    config: ModelConfig
    tokenizer: PianoTokenizer
    composers: Composers
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.name


def save_bundle(
    path: str | Path,
    model: Decoder,
    tokenizer: PianoTokenizer,
    composers: Composers,
    *,
    summary: dict[str, Any] | None = None,
    card: str | None = None,
    trainer_state: dict[str, Any] | None = None,
    train_config: dict[str, Any] | None = None,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Write a bundle atomically (temp folder, then rename) and return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    config = {
        "model": model.cfg.to_dict(),
        "tokenizer": tokenizer.to_dict()["settings"],
        "train": train_config or {},
        "summary": summary or {},
    }
    (tmp / "config.json").write_text(json.dumps(config, indent=1))
    tokenizer.save(tmp / "tokenizer.json")
    composers.save(tmp / "composers.json")
    plain = _unwrap(model)
    if dtype != torch.float32:  # a copy, so training goes on in full precision
        plain = copy.deepcopy(plain).to(dtype)
    save_model(plain, str(tmp / "model.safetensors"))
    if card is not None:
        (tmp / "MODEL_CARD.md").write_text(card)
    if trainer_state is not None:
        torch.save(trainer_state, tmp / "trainer.pt")
    old = path.parent / f".{path.name}.old"
    if path.exists():
        if old.exists():
            shutil.rmtree(old)
        path.rename(old)
    tmp.rename(path)
    if old.exists():
        shutil.rmtree(old)
    return path


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module under DDP / torch.compile wrappers."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def load_bundle(path: str | Path, device: str | torch.device = "cpu") -> Bundle:
    """Load a bundle, or raise `CheckpointError` with one line saying what is wrong."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such checkpoint folder")
    missing = [f for f in FILES if not (path / f).is_file()]
    if missing:
        raise CheckpointError(f"{path}: not a comagen checkpoint (missing {', '.join(missing)})")
    try:
        config = json.loads((path / "config.json").read_text())
        model_cfg = ModelConfig.from_dict(config["model"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path / 'config.json'}: unreadable ({exc})") from None
    except ComagenError as exc:
        raise CheckpointError(f"{path / 'config.json'}: {exc}") from None
    try:
        tokenizer = PianoTokenizer.load(path / "tokenizer.json")
        composers = Composers.load(path / "composers.json")
    except (ComagenError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: tokenizer or composers file unreadable ({exc})") from None
    model = build_model(model_cfg)
    try:
        missing_keys, unexpected = load_model(model, str(path / "model.safetensors"), strict=False, device=str(device))
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{path / 'model.safetensors'}: truncated or not our weights ({_short(exc)})") from None
    tied = {"head.weight", "token_emb.weight"} if model_cfg.tie_embeddings else set()
    if unexpected or len(set(missing_keys) - tied) or len(set(missing_keys) & tied) > 1:
        raise CheckpointError(f"{path / 'model.safetensors'}: weights do not match the config "
                              f"(missing {list(missing_keys)[:3]}, unexpected {list(unexpected)[:3]})")
    model.to(device).eval()
    return Bundle(path, model, model_cfg, tokenizer, composers, config.get("summary", {}))


def load_trainer_state(path: str | Path) -> dict[str, Any]:
    """Optimizer/scheduler/RNG/step of a training checkpoint, loaded without arbitrary unpickling."""
    file = Path(path) / "trainer.pt"
    if not file.is_file():
        raise CheckpointError(f"{path}: no trainer.pt to resume from")
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file; all mean the same here
        raise CheckpointError(f"{file}: unreadable training state ({_short(exc)})") from None


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:160]
