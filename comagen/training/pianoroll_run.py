"""One training run of the piano-roll transformer: MAESTRO as frames, binary cross-entropy per key,
AdamW with the OneCycle schedule stepped per optimizer step (`onecycle_peak` of warm-up), gradient
accumulation, fp16 autocast with a gradient scaler on CUDA (plain fp32 on the CPU, where a scaler
has nothing to do), validation frame NLL for `best` and early stopping, periodic `last` saves that
resume exactly, and a TorchScript copy in every bundle, checked against the eager model at the end.

The token runs are `run.Run`; `trainer.train` picks this one for `arch: pianoroll`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from comagen.bundle.checkpoint import load_trainer_state, restore_interrupted
from comagen.bundle.model_card import pianoroll_card
from comagen.bundle.pianoroll import check_torchscript, load_pianoroll, save_pianoroll
from comagen.errors import ConfigError
from comagen.model import ModelConfig, build_model
from comagen.music.frames import FrameSettings
from comagen.training.config import TrainConfig
from comagen.training.data import load_index, select_split
from comagen.training.frame_data import FrameCrops, key_frequency, load_frame_pieces
from comagen.training.frame_nll import model_nll
from comagen.training.loop import LoopedRun
from comagen.training.optim import apply_gradients, lr_at, param_groups
from comagen.training.progress import TrainingBar
from comagen.training.run import TrainResult, run_device

log = logging.getLogger("comagen.training")
TORCHSCRIPT_TOLERANCE = 1e-4


class PianoRollRun(LoopedRun):
    """Set-up, one optimizer step, evaluate-and-save, and the end of the shared loop."""

    def __init__(self, model_cfg: ModelConfig, cfg: TrainConfig) -> None:
        if cfg.init_from:
            raise ConfigError("init_from is for the token models; the pianoroll trains from scratch")
        super().__init__()
        self.cfg, self.out = cfg, Path(cfg.out)
        self.model_cfg = ModelConfig.from_dict({**model_cfg.to_dict(), "max_seq_len": max(model_cfg.max_seq_len,
                                                                                          cfg.seq_len)})
        self.frames = FrameSettings(cfg.frames_per_beat)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.device = run_device(cfg, 0)
        self.frames_seen = 0

    def set_up(self, resume: bool) -> PianoRollRun:
        cfg = self.cfg
        data_dir = cfg.data or os.environ.get("COMAGEN_MAESTRO_DIR")
        if not data_dir:
            raise ConfigError("no data folder: pass --data DIR or set COMAGEN_MAESTRO_DIR")
        pieces = load_index(data_dir)
        train = sorted(select_split(pieces, "train"), key=lambda p: p.key)[: cfg.train_files or None]
        val_all = select_split(pieces, "validation")
        picks = np.linspace(0, len(val_all) - 1, min(cfg.eval_files, len(val_all))).astype(int)
        self.crops = FrameCrops(load_frame_pieces(train, self.frames), cfg.seq_len, cfg.seed, cfg.augment_transpose)
        self.validation = load_frame_pieces([val_all[i] for i in picks], self.frames)
        torch.manual_seed(cfg.seed)
        self.model = build_model(self.model_cfg).to(self.device)
        self.model.set_key_prior(key_frequency(self.crops.pieces))
        self.optimizer = torch.optim.AdamW(param_groups(self.model, cfg), lr=cfg.lr, betas=(0.9, cfg.beta2))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: lr_at(s, cfg))
        cuda = self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=cuda and cfg.bf16)
        self.autocast = torch.autocast(self.device.type, dtype=torch.float16, enabled=cuda and cfg.bf16)
        restore_interrupted(self.out / "last")
        restore_interrupted(self.out / "best")
        if resume and (self.out / "last" / "trainer.pt").is_file():
            self._resume()
        self._say(f"pianoroll: {self.model.num_parameters() / 1e6:.2f}M parameters, {len(self.crops.pieces)} train "
                  f"pieces, {self.frames.frames_per_second:g} frames/s, device {self.device}")
        return self

    def _resume(self) -> None:
        state = load_trainer_state(self.out / "last")
        self.model.load_state_dict(load_pianoroll(self.out / "last", self.device).model.state_dict())
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])
        self._restore_counters(state)
        self.frames_seen = int(state["frames"])
        self._say(f"resumed from {self.out / 'last'} at step {self.step}")

    # ---- saving
    def summary(self) -> dict[str, Any]:
        return {"arch": "pianoroll", "parameters": self.model.num_parameters(), "step": self.step,
                "frames_seen": self.frames_seen, "train_seconds": round(self._seconds(), 1),
                "best_val_nats_per_frame": self.best, "seq_len": self.cfg.seq_len,
                "frames_per_second": self.frames.frames_per_second}

    def save(self, name: str) -> None:
        state = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                 "scaler": self.scaler.state_dict(), "torch_rng": torch.get_rng_state(), "frames": self.frames_seen,
                 **self._counters()}
        save_pianoroll(self.out / name, self.model, self.frames, summary=self.summary(),
                       card=pianoroll_card(self.out.name, self.summary(), self.model_cfg.to_dict()),
                       trainer_state=state, train_config=asdict(self.cfg))

    # ---- one step, one evaluation
    def _train_step(self) -> float:
        """One optimizer step over `grad_accum` micro-batches; the mean loss in nats per frame."""
        cfg, loss_sum = self.cfg, 0.0
        for micro in range(cfg.grad_accum):
            first = (self.step * cfg.grad_accum + micro) * cfg.batch_size
            batch = self.crops.batch(first, cfg.batch_size).to(self.device)
            with self.autocast:
                logits = self.model(batch[:, :-1])
            loss = F.binary_cross_entropy_with_logits(logits.float(), batch[:, 1:], reduction="none").sum(-1).mean()
            self.scaler.scale(loss / cfg.grad_accum).backward()
            loss_sum += loss.item() / cfg.grad_accum
        apply_gradients(self.model, self.optimizer, self.scheduler, cfg.clip, self.scaler)
        self.step += 1
        self.frames_seen += cfg.batch_size * cfg.grad_accum * cfg.seq_len
        self.history.append((self.step, loss_sum))
        return loss_sum

    def _evaluate_and_save(self, bar: TrainingBar) -> bool:
        """Validation nats per frame; `best` saved when it improves. True when patience has run out."""
        self.model.eval()
        nll = model_nll(self.model, self.validation, self.cfg.eval_max_tokens, self.device)
        self.model.train()
        return self._keep_best(nll, f"val nats/frame {nll:.4f}", bar)

    # ---- the loop's ends
    def _after_step(self, loss: float, bar: TrainingBar) -> None:
        if self.step % self.cfg.log_every == 0 or self.step == 1:
            log.info("step %d: loss %.4f nats/frame, lr %.2e", self.step, loss, self.scheduler.get_last_lr()[0])

    def _finish(self, stopped: str, bar: TrainingBar) -> TrainResult:
        """The final `last` save; the TorchScript copies loaded back and held to the eager model."""
        self.save("last")
        for name in ("last", "best"):
            if (self.out / name).is_dir():
                model = load_pianoroll(self.out / name, self.device).model
                diff = check_torchscript(self.out / name, model)
                if diff > TORCHSCRIPT_TOLERANCE:
                    raise ConfigError(f"{self.out / name}: the TorchScript copy differs from the model by {diff:.2e}")
                log.info("%s: TorchScript equals eager (max |diff| %.1e)", name, diff)
        log.info("stopped at step %d (%s)", self.step, stopped)
        return TrainResult(self.out, self.step, self.frames_seen, self._seconds(), None, self.history, stopped,
                           best_nats_per_frame=self.best)

