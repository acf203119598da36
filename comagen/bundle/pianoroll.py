"""The piano-roll bundle: a folder like the token bundles, without a tokenizer or composers.

    config.json        {"model": ModelConfig, "frames": FrameSettings, "train": ..., "summary": ...}
    model.safetensors  weights (loaded without unpickling anything)
    model.ts           the TorchScript copy of the full forward (frames -> key logits), for deployment
                       without this code; `check_torchscript` proves it equals the eager model
    MODEL_CARD.md      what it is, what it saw, what it measured
    sampling.json      (optional) its tuned sampling defaults, as for the token bundles
    trainer.pt         (training checkpoints only) optimizer, scheduler, scaler, RNG, step

Written into a temporary sibling that takes the old folder's place in one swap, as `save_bundle`.
A TorchScript file is code: `load_pianoroll` never reads it; only `check_torchscript` does, on a
bundle this process just wrote.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model

from comagen.bundle.checkpoint import (
    Bundle,
    _check_shapes,
    _inside_bundle,
    _read_json,
    read_sampling,
    staged_bundle,
    write_bundle_files,
)
from comagen.bundle.composers import Composers
from comagen.errors import CheckpointError, ComagenError
from comagen.model import ModelConfig, build_model
from comagen.model.pianoroll import KEYS, PianoRoll, trace
from comagen.music.frames import FrameSettings
from comagen.music.tokenizer import PianoTokenizer

TORCHSCRIPT = "model.ts"


@dataclass
class PianoRollBundle:
    path: Path
    model: PianoRoll
    config: ModelConfig
    frames: FrameSettings
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.name


@dataclass
class FrameBundle(Bundle):
    """A piano-roll bundle as the app sees a checkpoint: the plain REMI tokenizer stands in for its
    text, its files and Continue (frames -> notes -> tokens, `comagen.generation.frame_session`);
    no composers (it was trained without them)."""

    frames: FrameSettings = field(default_factory=FrameSettings)


def frame_bundle(path: str | Path) -> FrameBundle:
    """Load a piano-roll bundle for the app (as `load_pianoroll`: JSON and safetensors only)."""
    loaded = load_pianoroll(path)
    return FrameBundle(loaded.path, loaded.model, loaded.config, PianoTokenizer(), Composers([]), loaded.summary,
                       read_sampling(loaded.path), frames=loaded.frames)


def is_pianoroll_bundle(path: str | Path) -> bool:
    """True when a folder holds a piano-roll bundle (its config names the arch)."""
    file = Path(path) / "config.json"
    try:
        return json.loads(file.read_text())["model"]["arch"] == "pianoroll"
    except (OSError, ValueError, KeyError, TypeError):
        return False


def save_pianoroll(path: str | Path, model: PianoRoll, frames: FrameSettings, *, summary: dict[str, Any],
                   card: str, trainer_state: dict[str, Any] | None = None,
                   train_config: dict[str, Any] | None = None) -> Path:
    """Write the bundle (TorchScript copy included) atomically; CheckpointError when it cannot."""
    path = Path(path)
    with staged_bundle(path) as tmp:
        write_bundle_files(tmp, {"model": model.cfg.to_dict(), "frames": asdict(frames), "train": train_config or {},
                                 "summary": summary}, card, trainer_state)
        save_model(model, str(tmp / "model.safetensors"))
        was_training = model.training
        torch.jit.save(trace(model), str(tmp / TORCHSCRIPT))
        model.train(was_training)
    return path


def load_pianoroll(path: str | Path, device: str | torch.device = "cpu") -> PianoRollBundle:
    """Load a piano-roll bundle (JSON and safetensors only), or one CheckpointError line."""
    path = Path(path)
    for name in ("config.json", "model.safetensors"):
        if not (path / name).is_file():
            raise CheckpointError(f"{path}: not a piano-roll checkpoint (missing {name})")
        _inside_bundle(path, name)
    config = _read_json(path / "config.json")
    try:
        model_cfg = ModelConfig.from_dict(config["model"])
        frames = FrameSettings(**config["frames"])
        if model_cfg.arch != "pianoroll":
            raise TypeError(f"arch {model_cfg.arch!r} is not pianoroll")
    except ComagenError as exc:
        raise CheckpointError(f"{path / 'config.json'}: {exc}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path / 'config.json'}: unreadable ({exc})") from None
    _check_shapes(path / "model.safetensors", model_cfg)
    model = build_model(model_cfg)
    try:
        missing, unexpected = load_model(model, str(path / "model.safetensors"), strict=False, device=str(device))
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{path / 'model.safetensors'}: truncated or not our weights ({exc})") from None
    if missing or unexpected:
        raise CheckpointError(f"{path / 'model.safetensors'}: weights do not match the config")
    return PianoRollBundle(path, model.to(device).eval(), model_cfg, frames, config.get("summary", {}))


@torch.no_grad()
def check_torchscript(path: str | Path, model: PianoRoll, frames: torch.Tensor | None = None) -> float:
    """Largest |TorchScript - eager| logit difference on `frames` [B, L, 128] (default: a seeded
    random roll of half the memory); the caller decides what is equal enough."""
    scripted = torch.jit.load(str(Path(path) / TORCHSCRIPT), map_location=model.head.weight.device)
    if frames is None:
        gen = torch.Generator().manual_seed(0)
        frames = (torch.rand(1, model.memory // 2, KEYS, generator=gen) < 0.05).float()
    frames = frames.to(model.head.weight.device)
    model.eval()
    return float((scripted(frames) - model(frames)).abs().max())
