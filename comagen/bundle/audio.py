"""The audio bundle: the VQ-VAE codec alone, or the codec with the melformer that continues its codes.

    config.json             {"models": {"codec": ModelConfig, ["melformer": ModelConfig]}, "train": ..., "summary": ...}
    codec.safetensors       the VQ-VAE (codebook included)
    melformer.safetensors   (melformer bundles) the llama over the codec's codes
    MODEL_CARD.md           what it is, what it saw, what it measured
    trainer.pt              (training checkpoints only) optimizer, scheduler, RNG, step

Written into a temporary sibling that takes the old folder's place in one swap, as `save_bundle`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model

from comagen.bundle.checkpoint import _inside_bundle, _read_json, staged_bundle, write_bundle_files
from comagen.errors import CheckpointError, ComagenError
from comagen.model import ModelConfig, build_model


@dataclass
class AudioBundle:
    path: Path
    models: dict[str, torch.nn.Module]
    summary: dict[str, Any] = field(default_factory=dict)


def save_audio_bundle(path: str | Path, models: dict[str, torch.nn.Module], *, summary: dict[str, Any], card: str,
                      trainer_state: dict[str, Any] | None = None,
                      train_config: dict[str, Any] | None = None) -> Path:
    """Write the bundle atomically; CheckpointError when it cannot."""
    path = Path(path)
    with staged_bundle(path) as tmp:
        write_bundle_files(tmp, {"models": {name: m.cfg.to_dict() for name, m in models.items()},
                                 "train": train_config or {}, "summary": summary}, card, trainer_state)
        for name, model in models.items():
            save_model(model, str(tmp / f"{name}.safetensors"))
    return path


def load_audio_bundle(path: str | Path, device: str | torch.device = "cpu", need: tuple[str, ...] = ("codec",)
                      ) -> AudioBundle:
    """Every model the bundle holds, in eval mode; a folder that lacks one of `need` is one line."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise CheckpointError(f"{path}: not an audio checkpoint (no config.json)")
    config = _read_json(_inside_bundle(path, "config.json"))
    configs = config.get("models") if isinstance(config, dict) else None
    if not isinstance(configs, dict) or any(name not in configs for name in need):
        raise CheckpointError(f"{path}: not an audio checkpoint with {' and '.join(need)}")
    models = {}
    for name, cfg in configs.items():
        try:
            model = build_model(ModelConfig.from_dict(cfg))
            load_model(model, str(_inside_bundle(path, f"{name}.safetensors")), device=str(device))
        except (ComagenError, OSError, SafetensorError, RuntimeError) as exc:
            raise CheckpointError(f"{path}: its {name} cannot be loaded ({str(exc).splitlines()[0][:160]})") from None
        models[name] = model.to(device).eval()
    return AudioBundle(path, models, config.get("summary", {}))


def audio_card(name: str, summary: dict[str, Any], models: dict[str, torch.nn.Module]) -> str:
    """MODEL_CARD.md of an audio bundle: what each part is, what it saw, its validation figures."""
    from comagen.bundle.model_card import LICENCE

    codec = models["codec"].cfg
    lines = [f"# comagen audio checkpoint `{name}`", "",
             f"- codec: a waveform VQ-VAE at {codec.samples_per_beat} samples per beat (mono; 120 bpm is "
             f"{codec.samples_per_beat * 2 // 1000} kHz), strides {codec.codec_strides}, one codebook of "
             f"{codec.codebook_size} codes of width {codec.dim} (vector-quantize-pytorch, EMA).", ""]
    if "melformer" in models:
        cfg = models["melformer"].cfg
        lines += [f"- melformer: a llama (RMSNorm, RoPE, SwiGLU, {cfg.kv_heads} KV heads for {cfg.heads} query "
                  f"heads, KV cache), dim {cfg.dim}, depth {cfg.depth}, over the frozen codec's codes.", ""]
    lines += ["## Training",
              "- Data: MAESTRO v3.0.0, **train split only**, rendered through FluidSynth onto the 120 bpm grid "
              "(training/render_audio.py); picked on validation renders.",
              *(f"- {key}: {value}" for key, value in summary.items()), "", *LICENCE]
    return "\n".join(lines)
