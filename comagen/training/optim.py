"""How the run updates its weights: the learning-rate schedule, AdamW's parameter groups, and
activation checkpointing (memory traded for a second forward pass)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.utils.checkpoint import checkpoint

from comagen.model import Decoder
from comagen.training.config import TrainConfig


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning-rate multiplier: linear warmup then cosine to `min_lr_ratio` (or OneCycle's shape)."""
    if cfg.schedule == "onecycle":
        peak = max(1, int(cfg.onecycle_peak * cfg.max_steps))
        if step < peak:
            return 0.04 + 0.96 * step / peak
        frac = (step - peak) / max(1, cfg.max_steps - peak)
        return 1e-3 + (1 - 1e-3) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    frac = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))


def apply_gradients(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler, clip: float,
                    scaler: torch.amp.GradScaler | None = None) -> torch.Tensor:
    """The update every run ends its step with: clip the gradient norm (unscaled first under a
    gradient scaler), step the optimizer and the schedule, clear the gradients. Returns the norm before
    clipping as a tensor: reading it would wait for the GPU, so a run reads it only when it logs."""
    if scaler is not None:
        scaler.unscale_(optimizer)
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    if scaler is None:
        optimizer.step()
    else:
        scaler.step(optimizer)
        scaler.update()
    optimizer.zero_grad(set_to_none=True)
    scheduler.step()
    return grad_norm


def param_groups(model: Decoder, cfg: TrainConfig) -> list[dict[str, Any]]:
    """Weight decay on matrices only; the attention scale-mix logits get `scale_lr_mult` x the
    learning rate: each is one scalar against a scale's whole value projection, which can absorb
    the same change, so at the base rate they barely leave uniform in a short run."""
    named = list(model.named_parameters())
    mix = [p for n, p in named if n.endswith("scale_logits")]
    decay = [p for n, p in named if p.dim() >= 2 and "emb" not in n]
    no_decay = [p for n, p in named if (p.dim() < 2 or "emb" in n) and not n.endswith("scale_logits")]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if mix:
        groups.append({"params": mix, "weight_decay": 0.0, "lr": cfg.lr * cfg.scale_lr_mult})
    return groups


def use_activation_checkpointing(model: Decoder) -> None:
    """Recompute each block in the backward pass instead of storing its activations."""
    for block in model.blocks:
        plain = block.forward

        def forward(*args: Any, _plain: Any = plain, **kwargs: Any) -> Any:
            if torch.is_grad_enabled():
                return checkpoint(_plain, *args, use_reentrant=False, **kwargs)
            return _plain(*args, **kwargs)

        block.forward = forward
