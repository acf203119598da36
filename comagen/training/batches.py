"""The run's batches: micro-batch k is a pure function of (k, rank, seed), so a resumed run, a
run with loader workers and a run without them all see the same batches in the same order."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from comagen.training.config import TrainConfig
from comagen.training.data import CropDataset


def batch_at(dataset: CropDataset, step: int, micro: int, cfg: TrainConfig, rank: int,
             world: int) -> dict[str, torch.Tensor]:
    """Micro-batch `micro` of global step `step` for this rank: a pure function of its arguments."""
    batch_size, cond_dropout, seed = cfg.batch_size, cfg.cond_dropout, cfg.seed
    base = ((step * cfg.grad_accum + micro) * world + rank) * batch_size
    items = [dataset[(base + i) % dataset.length] for i in range(batch_size)]
    batch = {k: torch.stack([it[k] for it in items]) for k in items[0]}
    rng = np.random.default_rng((seed, 7, step, micro, rank))
    drop = torch.from_numpy(rng.random(batch_size) < cond_dropout)
    batch["composer"] = torch.where(drop, torch.zeros_like(batch["composer"]), batch["composer"])
    return batch


class MicroBatches(torch.utils.data.Dataset):
    """Micro-batch k (step k // grad_accum) of this rank, so loader workers can build the next
    batches while the device trains on this one, and a resumed run starts at any k."""

    def __init__(self, dataset: CropDataset, cfg: TrainConfig, rank: int, world: int) -> None:
        self.dataset, self.cfg, self.rank, self.world = dataset, cfg, rank, world

    def __len__(self) -> int:
        return self.cfg.max_steps * self.cfg.grad_accum

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        step, micro = divmod(k, self.cfg.grad_accum)
        return batch_at(self.dataset, step, micro, self.cfg, self.rank, self.world)


def micro_batches(dataset: CropDataset, cfg: TrainConfig, rank: int, world: int, first_step: int,
                  device: torch.device) -> Iterator[dict[str, torch.Tensor]]:
    """The run's micro-batches from `first_step` on: built ahead in `loader_workers` processes
    and pinned on CUDA; the same batches in the same order whatever the worker count."""
    source = MicroBatches(dataset, cfg, rank, world)
    workers = cfg.loader_workers if cfg.loader_workers >= 0 else (2 if device.type == "cuda" else 0)
    loader = torch.utils.data.DataLoader(
        source, batch_size=None, sampler=range(first_step * cfg.grad_accum, len(source)), num_workers=workers,
        pin_memory=device.type == "cuda", prefetch_factor=4 if workers else None,
        generator=torch.Generator())  # its own: drawing a loader seed from the global RNG would shift dropout
    return iter(loader)
