"""The training run's settings: `TrainConfig` (every key documented, an unknown key an error) and the
run file (`{"model": {...}, "train": {...}}`) with `key=value` overrides from the command line."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from comagen.errors import ConfigError
from comagen.model import ModelConfig


@dataclass
class TrainConfig:
    """Training knobs; every key is documented here and an unknown key is an error."""

    data: str | None = None  # MAESTRO folder (else $COMAGEN_MAESTRO_DIR)
    cache: str = "cache"  # token cache root
    tokenizer: str | None = None  # tokenizer.json (e.g. BPE); None = built-in REMI settings
    init_from: str | None = None  # a bundle to start from: its model config, weights, tokenizer, composers
    codec: str | None = None  # melformer: the frozen VQ-VAE bundle whose codes a llama learns (data: beat files)
    train_files: int = 0  # use only the first N train pieces (0 = all; for quick runs and tests)
    out: str = "runs/default"  # where checkpoints and TensorBoard logs go
    seq_len: int = 512
    batch_size: int = 16
    grad_accum: int = 1
    lr: float = 1e-3
    min_lr_ratio: float = 0.1  # cosine floor as a fraction of lr
    warmup_steps: int = 200
    schedule: str = "cosine"  # "cosine" (warmup then cosine) or "onecycle" (stepped per optimizer step)
    onecycle_peak: float = 0.3  # onecycle: share of max_steps spent warming up to the peak rate
    frames_per_beat: int = 8  # pianoroll: frame length, 1/8 beat = 62.5 ms (bench/frames.py)
    weight_decay: float = 0.1
    beta2: float = 0.99
    clip: float = 1.0
    scale_lr_mult: float = 1.0  # learning-rate multiplier for the attention scale-mix logits
    label_smoothing: float = 0.0
    cond_dropout: float = 0.1  # share of crops trained without composer (for guidance)
    max_steps: int = 5000
    max_minutes: float | None = None
    stop_after: int = 0  # end this invocation after N steps (schedule unchanged; resume later)
    eval_every: int = 250
    eval_files: int = 16  # validation pieces per evaluation (shortest-first is biased; we take a fixed spread)
    eval_max_tokens: int = 4096  # tokens scored per validation piece
    patience: int = 0  # evaluations without improvement before stopping (0 = never stop early)
    save_every: int = 250
    log_every: int = 10
    seed: int = 0
    threads: int = 0  # CPU threads (0 = torch default)
    loader_workers: int = -1  # processes building batches ahead (-1 = 2 on CUDA, none on the CPU)
    augment_transpose: int = 3
    augment_velocity: int = 1
    augment_stretch: float = 0.0
    compile: bool = False
    activation_checkpointing: bool = False
    bf16: bool = True  # autocast on CUDA only
    save_dtype: str = "float32"  # weights in the bundle: "float32" or "bfloat16" (half the size)
    device: str = "auto"
    progress: bool = True

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        valid = {f.name: f for f in fields(cls)}
        for key in d:
            if key not in valid:
                raise ConfigError(f"unknown train config key {key!r}; valid keys: {', '.join(valid)}")
        cfg = cls(**d)
        if cfg.save_dtype not in ("float32", "bfloat16"):
            raise ConfigError(f"train config save_dtype={cfg.save_dtype!r}: must be 'float32' or 'bfloat16'")
        if cfg.schedule not in ("cosine", "onecycle"):
            raise ConfigError(f"train config schedule={cfg.schedule!r}: must be 'cosine' or 'onecycle'")
        return cfg


def load_run_config(path: str | Path, overrides: list[str]) -> tuple[ModelConfig, TrainConfig]:
    """A config JSON ({"model": {...}, "train": {...}}) with `key=value` overrides applied.

    Keys may be qualified (`model.dim=128`, `train.lr=3e-4`) or bare when unambiguous.
    """
    try:
        raw = json.loads(Path(path).read_text())
    except OSError:
        raise ConfigError(f"{path}: no such config file") from None
    except ValueError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from None
    extra = set(raw) - {"model", "train"}
    if extra:
        raise ConfigError(f"{path}: unknown top-level key(s) {sorted(extra)}; expected 'model' and 'train'")
    model, train = dict(raw.get("model", {})), dict(raw.get("train", {}))
    model_keys = {f.name for f in fields(ModelConfig)}
    train_keys = {f.name for f in fields(TrainConfig)}
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} must look like key=value")
        section, _, name = key.rpartition(".")
        if not section:
            section = "model" if name in model_keys and name not in train_keys else "train"
        target = {"model": model, "train": train}.get(section)
        if target is None or name not in (model_keys if section == "model" else train_keys):
            raise ConfigError(f"unknown config key {key!r}")
        target[name] = _parse_value(text)
    return ModelConfig.from_dict(model), TrainConfig.from_dict(train)


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text
