"""The loop both audio runs share (the VQ-VAE codec, then the melformer over its codes): AdamW with the
project's schedule, seeded batches that resume exactly, periodic validation that keeps `best`, `last` saves,
and TensorBoard. The subclasses say what a step, an evaluation and a bundle are.

`trainer.train` picks `VQVAERun` for `arch: vqvae` and `MelformerRun` when the config names a `codec`.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from comagen.bundle.audio import save_audio_bundle
from comagen.bundle.checkpoint import load_trainer_state, restore_interrupted
from comagen.errors import ConfigError
from comagen.model import ModelConfig
from comagen.training.config import TrainConfig
from comagen.training.loop import LoopedRun
from comagen.training.optim import apply_gradients, lr_at
from comagen.training.progress import TrainingBar
from comagen.training.run import TrainResult, run_device

log = logging.getLogger("comagen.training")


class AudioRun(LoopedRun):
    """Set-up, resume and saves around the shared loop; `_load`, `_loss`, `_evaluate`, `models` and
    `card` per run."""

    measure = "val"  # the validation figure's name in logs and summaries (lower is better)

    def __init__(self, model_cfg: ModelConfig, cfg: TrainConfig) -> None:
        if cfg.init_from:
            raise ConfigError("init_from is for the token models; the audio runs train from scratch")
        if not cfg.data:
            raise ConfigError("no data folder: pass --data DIR (beat-aligned renders from training/render_audio.py)")
        super().__init__()
        self.model_cfg, self.cfg, self.out = model_cfg, cfg, Path(cfg.out)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.device = run_device(cfg, 0)
        self.baselines: dict[str, float] = {}  # figures fixed at set-up (the melformer's n-gram yardsticks)
        self.figures: dict[str, float] = {}  # the best evaluation's figures

    # ---- subclass hooks
    def _load(self) -> None:
        """Data (`self.crops`, validation) and `self.model`, the module that trains."""
        raise NotImplementedError

    def _loss(self, batch: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _evaluate(self) -> dict[str, float]:
        """Validation figures; `self.measure` among them decides `best`."""
        raise NotImplementedError

    def _log_extra(self) -> None:
        """What else TensorBoard gets every `log_every` steps."""

    def models(self) -> dict[str, torch.nn.Module]:
        raise NotImplementedError

    def card(self) -> str:
        raise NotImplementedError

    # ---- set-up
    def set_up(self, resume: bool) -> AudioRun:
        from torch.utils.tensorboard import SummaryWriter

        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        self._load()
        self.model.to(self.device)
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, betas=(0.9, cfg.beta2),
                                           weight_decay=cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: lr_at(s, cfg))
        restore_interrupted(self.out / "last")
        restore_interrupted(self.out / "best")
        if resume and (self.out / "last" / "trainer.pt").is_file():
            self._resume()
        self.writer = SummaryWriter(str(self.out / "tensorboard"), purge_step=self.step or None)
        self._say(f"{self.model_cfg.arch}: {sum(p.numel() for p in trainable) / 1e6:.2f}M trained parameters, "
                  f"{len(self.crops.streams)} train streams, device {self.device}")
        return self

    def _resume(self) -> None:
        from safetensors.torch import load_model

        state = load_trainer_state(self.out / "last")
        load_model(self.model, str(self.out / "last" / f"{self.trained}.safetensors"), device=str(self.device))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        self._restore_counters(state)
        self._say(f"resumed from {self.out / 'last'} at step {self.step}")

    # ---- saving
    def summary(self) -> dict[str, Any]:
        return {"arch": self.model_cfg.arch, "parameters": sum(p.numel() for p in self.model.parameters()),
                "step": self.step, "train_seconds": round(self._seconds(), 1), f"best_{self.measure}": self.best,
                "seq_len": self.cfg.seq_len, **self.baselines, **self.figures}

    def save(self, name: str) -> None:
        state = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                 "torch_rng": torch.get_rng_state(), **self._counters()}
        save_audio_bundle(self.out / name, self.models(), summary=self.summary(), card=self.card(),
                          trainer_state=state, train_config=asdict(self.cfg))

    # ---- one step, one evaluation
    def _train_step(self) -> float:
        cfg, loss_sum = self.cfg, 0.0
        for micro in range(cfg.grad_accum):
            batch = self.crops.batch(self.step * cfg.grad_accum + micro, cfg.batch_size).to(self.device)
            loss = self._loss(batch)
            (loss / cfg.grad_accum).backward()
            loss_sum += loss.item() / cfg.grad_accum
        grad_norm = apply_gradients(self.model, self.optimizer, self.scheduler, cfg.clip)
        self.step += 1
        self.history.append((self.step, loss_sum))
        if self.step % cfg.log_every == 0 or self.step == 1:
            for key, value in (("loss", loss_sum), ("lr", self.scheduler.get_last_lr()[0]),
                               ("grad_norm", float(grad_norm))):
                self.writer.add_scalar(f"train/{key}", value, self.step)
            self._log_extra()
        return loss_sum

    def _evaluate_and_save(self, bar: TrainingBar) -> bool:
        """Validation; `best` saved when it improves. True when patience has run out."""
        self.model.eval()
        with torch.no_grad():
            figures = self._evaluate()
        self.model.train()
        for key, value in figures.items():
            self.writer.add_scalar(f"val/{key}", value, self.step)
        value = figures[self.measure]
        if self.best is None or value < self.best:
            self.figures = {f"val_{k}": round(v, 4) for k, v in figures.items()}
        shown = ", ".join(f"{k} {v:.4f}" for k, v in figures.items())
        return self._keep_best(value, shown, bar)

    # ---- the loop's ends
    def _after_step(self, loss: float, bar: TrainingBar) -> None:
        bar.set_postfix(loss=f"{loss:.3f}")

    def _finish(self, stopped: str, bar: TrainingBar) -> TrainResult:
        if stopped != "max_steps" and self.best is None:  # stopped before any evaluation: evaluate once
            self._evaluate_and_save(bar)
        self.save("last")
        self.writer.close()
        log.info("stopped at step %d (%s)", self.step, stopped)
        return TrainResult(self.out, self.step, 0, self._seconds(), None, self.history, stopped)
