"""The checkpoint bundle (DESIGN §6): a folder anyone can read without unpickling code.

    config.json        model config + tokenizer settings + training summary
    tokenizer.json     the exact tokenizer (BPE merges included)
    composers.json     conditioning id <-> composer name
    model.safetensors  weights
    MODEL_CARD.md      what it is, what it was trained on, what it measured
    trainer.pt         (training checkpoints only) optimizer, scheduler, RNG, step; loaded with
                       torch.load(weights_only=True), which refuses arbitrary objects

A bundle is written into a temporary sibling folder that takes the old one's place in one atomic
swap, so a crash never leaves a half-written checkpoint where a good one was.
"""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model

from comagen.data import Composers
from comagen.errors import CheckpointError, ComagenError
from comagen.files import exchange
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
    """Write a bundle atomically and return its path.

    The files go into a temp folder of this call's own, which then takes the bundle's place in one
    step, so a kill at any moment leaves the old bundle or the new one. A write that fails (a full
    disk, an unwritable folder) raises `CheckpointError` and leaves the previous bundle as it was.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        restore_interrupted(path)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as exc:
        raise CheckpointError(f"cannot write checkpoint {path}: {exc.strerror or exc}") from None
    try:
        _write_files(tmp, model, tokenizer, composers, summary, card, trainer_state, train_config, dtype)
        _replace_folder(tmp, path)
    except (OSError, SafetensorError, RuntimeError) as exc:  # the last two: safetensors' and torch.save's I/O errors
        shutil.rmtree(tmp, ignore_errors=True)
        kept = " (the previous checkpoint is kept)" if path.is_dir() else ""
        reason = getattr(exc, "strerror", None) or _short(exc)
        raise CheckpointError(f"cannot write checkpoint {path}: {reason}{kept}") from None
    return path


def _write_files(tmp: Path, model: Decoder, tokenizer: PianoTokenizer, composers: Composers,
                 summary: dict[str, Any] | None, card: str | None, trainer_state: dict[str, Any] | None,
                 train_config: dict[str, Any] | None, dtype: torch.dtype) -> None:
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


def _replace_folder(new: Path, path: Path) -> None:
    """Put folder `new` at `path`: one atomic swap where the OS offers it, else two renames that
    `restore_interrupted` can undo."""
    if not path.exists():
        new.rename(path)
    elif exchange(new, path):
        shutil.rmtree(new)  # now holds the old bundle
    else:
        old = _old_name(path)
        if old.exists():
            shutil.rmtree(old)
        path.rename(old)
        new.rename(path)
        shutil.rmtree(old)


def _old_name(path: Path) -> Path:
    return path.parent / f".{path.name}.old"


def restore_interrupted(path: str | Path) -> None:
    """Undo a replacement that a kill cut between its two renames (the old bundle comes back),
    and remove temp folders that killed writers left behind."""
    path = Path(path)
    old = _old_name(path)
    if not path.exists() and old.is_dir():
        old.rename(path)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)


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
