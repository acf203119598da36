"""One training run: set-up (processes, data, model, optimizer), resume, one optimizer step,
evaluate-and-save, and the loop that schedules them.

Runs on CPU, one GPU (bf16 autocast, optional torch.compile), or several processes under
`torchrun` (DDP; gloo on CPU). Checkpoints are bundles (see checkpoint.py) plus optimizer,
scheduler, RNG and step, so a stopped run resumes to the same losses as one left alone:
batch k is always built from the same seeded crops, whatever happened before.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from comagen.bundle.checkpoint import load_bundle, load_trainer_state, restore_interrupted, save_bundle
from comagen.bundle.model_card import model_card
from comagen.errors import ConfigError
from comagen.model import ModelConfig, build_model
from comagen.training.batches import micro_batches
from comagen.training.config import TrainConfig
from comagen.training.data import Augment, CropDataset
from comagen.training.evaluate import evaluate_pieces
from comagen.training.optim import apply_gradients, lr_at, param_groups, use_activation_checkpointing
from comagen.training.progress import TrainingBar
from comagen.training.run_data import TrainData, load_run_data

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What one invocation did: where it wrote, how far it got, its losses per step and why it stopped."""

    out: Path
    step: int
    tokens: int
    seconds: float
    best_bits_per_note: float | None
    losses: list[tuple[int, float]] = field(default_factory=list)
    stopped: str = ""
    best_nats_per_frame: float | None = None  # the pianoroll's validation measure (frame NLL)


def run_device(cfg: TrainConfig, rank: int) -> torch.device:
    """The configured device, or under "auto" this rank's GPU (the CPU when there is none)."""
    if cfg.device != "auto":
        return torch.device(cfg.device)
    return torch.device(f"cuda:{rank % torch.cuda.device_count()}" if torch.cuda.is_available() else "cpu")


class Run:
    """One training run; one method per phase, so `loop` reads as the schedule it is."""

    def __init__(self, model_cfg: ModelConfig, cfg: TrainConfig, given: TrainData | None = None) -> None:
        self.requested, self.cfg, self.given = model_cfg, cfg, given
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() and cfg.device != "cpu" else "gloo")
        self.main = self.rank == 0
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.device = run_device(cfg, self.rank)
        self.out = Path(cfg.out)
        self.step, self.tokens_seen, self.elapsed = 0, 0, 0.0
        self.best = given.baseline if given else None
        self.history: list[tuple[int, float]] = []
        self.bad_evals = 0
        self.t_start = time.perf_counter()
        self.t_log, self.tokens_log = self.t_start, 0

    # ---- set-up
    def set_up(self, resume: bool) -> Run:
        """Data, model, optimizer and schedule; resume from `out/last`; compile/DDP; the log."""
        cfg = self.cfg
        self.data = load_run_data(cfg, self.given, progress=self.main and cfg.progress)
        self.model_cfg = self.data.model_config(self.requested, cfg.seq_len)
        augment = Augment(cfg.augment_transpose, cfg.augment_velocity, cfg.augment_stretch)
        self.dataset = CropDataset(self.data.train, self.data.tokenizer, self.data.composers, cfg.seq_len,
                                   seed=cfg.seed, augment=augment)
        self._build_model()
        self.optimizer = torch.optim.AdamW(param_groups(self.model, cfg), lr=cfg.lr, betas=(0.9, cfg.beta2),
                                           fused=self.device.type == "cuda")
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: lr_at(s, cfg))
        if self.main:  # a kill between a save's two renames leaves the previous bundle aside: bring it back
            restore_interrupted(self.out / "last")
            restore_interrupted(self.out / "best")
        if self.world > 1:
            dist.barrier()
        if resume and (self.out / "last" / "trainer.pt").is_file():
            self._resume()
        self._wrap_model()
        self.writer = None
        if self.main:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.out / "tensorboard"), purge_step=self.step if self.step else None)
            self._say(f"{self.model_cfg.arch}: {self.model.num_parameters() / 1e6:.2f}M parameters, vocab "
                      f"{self.data.tokenizer.vocab_size}, {len(self.data.train)} train pieces, device {self.device}")
        return self

    def _build_model(self) -> None:
        """A fresh model, or the base bundle's weights in the run's config, on the run's device."""
        torch.manual_seed(self.cfg.seed)
        self.model = build_model(self.model_cfg)
        if self.data.base is not None:
            try:
                self.model.load_state_dict(self.data.base.model.state_dict())
            except RuntimeError:  # e.g. a longer seq_len than a learned position table holds
                raise ConfigError(f"{self.cfg.init_from}: its weights do not fit this run "
                                  f"(seq_len {self.cfg.seq_len}?)") from None
        self.model.to(self.device)

    def _wrap_model(self) -> None:
        """`net`, what the steps call: the model with activation checkpointing, compiled, under DDP."""
        if self.cfg.activation_checkpointing:
            use_activation_checkpointing(self.model)
        self.net: torch.nn.Module = torch.compile(self.model) if self.cfg.compile else self.model
        if self.world > 1:
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.net, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def _resume(self) -> None:
        """Weights, optimizer, schedule, RNG and counters from the last save."""
        state = load_trainer_state(self.out / "last")
        bundle = load_bundle(self.out / "last", self.device)
        self.model.load_state_dict(bundle.model.state_dict())
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        self.step, self.tokens_seen, self.elapsed = int(state["step"]), int(state["tokens"]), float(state["elapsed"])
        self.best = float(state["best"]) if state["best"] >= 0 else None
        self.history = [(int(s), float(v)) for s, v in state["history"].tolist()]
        if self.main:
            self._say(f"resumed from {self.out / 'last'} at step {self.step}")

    def _say(self, message: str, bar: tqdm | None = None) -> None:
        """One line for the terminal (through the progress bar while it runs) and the run's log."""
        log.info(message)
        if bar is None:
            print(message)
        else:
            bar.write(message)

    # ---- saving
    def _seconds(self) -> float:
        return self.elapsed + time.perf_counter() - self.t_start

    def snapshot(self) -> dict[str, Any]:
        """trainer.pt: everything beyond the weights that an exact resume needs."""
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "torch_rng": torch.get_rng_state(), "step": self.step, "tokens": self.tokens_seen,
                "elapsed": self._seconds(), "best": -1.0 if self.best is None else self.best,
                "history": torch.tensor(self.history, dtype=torch.float64).reshape(-1, 2)}

    def summary(self) -> dict[str, Any]:
        """The bundle's training summary (config.json, model card)."""
        return {"arch": self.model_cfg.arch, "parameters": self.model.num_parameters(), "step": self.step,
                "tokens_seen": self.tokens_seen, "train_seconds": round(self._seconds(), 1),
                "best_val_bits_per_note": self.best, "seq_len": self.cfg.seq_len}

    def save(self, name: str) -> None:
        card = model_card(self.out.name, self.summary(), self.model_cfg.to_dict())
        save_bundle(self.out / name, self.model, self.data.tokenizer, self.data.composers, summary=self.summary(),
                    card=card, trainer_state=self.snapshot(), train_config=asdict(self.cfg),
                    dtype=getattr(torch, self.cfg.save_dtype))

    # ---- one step, one evaluation
    def _autocast(self) -> Any:
        if self.device.type == "cuda" and self.cfg.bf16:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return torch.autocast("cpu", enabled=False)

    def _train_step(self, batches: Iterator[dict], autocast: Any) -> tuple[float, torch.Tensor]:
        """One optimizer step over `grad_accum` micro-batches: (mean loss, gradient norm)."""
        cfg, loss_sum = self.cfg, 0.0
        for _ in range(cfg.grad_accum):
            batch = {k: v.to(self.device, non_blocking=True) for k, v in next(batches).items()}
            with autocast:
                logits = self.net(batch["input"], batch["composer"])
                loss = F.cross_entropy(logits.float().flatten(0, 1), batch["target"].flatten(),
                                       reduction="none", label_smoothing=cfg.label_smoothing)
                loss = (loss * batch["mask"].flatten()).sum() / batch["mask"].sum().clamp(min=1)
            (loss / cfg.grad_accum).backward()
            loss_sum += loss.item() / cfg.grad_accum
        grad_norm = apply_gradients(self.model, self.optimizer, self.scheduler, cfg.clip)
        self.step += 1
        tokens = cfg.batch_size * cfg.grad_accum * cfg.seq_len * self.world
        self.tokens_seen += tokens
        self.tokens_log += tokens
        self.history.append((self.step, loss_sum))
        return loss_sum, grad_norm

    def _evaluate_and_save(self, bar: tqdm) -> bool:
        """Validation bits per note; save `best` when it improves. True when patience has run out."""
        if self.main:
            self.model.eval()
            metrics = evaluate_pieces(self.model, self.data.validation, self.data.tokenizer, self.data.composers,
                                      seq_len=self.cfg.seq_len, max_tokens=self.cfg.eval_max_tokens,
                                      device=self.device)
            self.model.train()
            bpn = metrics["bits_per_note"]
            self.writer.add_scalar("val/bits_per_note", bpn, self.step)
            self.writer.add_scalar("val/nll_per_token", metrics["nll_per_token"], self.step)
            if self.best is None or bpn < self.best:
                self.best, self.bad_evals = bpn, 0
                self.save("best")
            else:
                self.bad_evals += 1
            self._say(f"step {self.step}: val bits/note {bpn:.4f} (best {self.best:.4f})", bar)
        stop = torch.tensor([int(bool(self.cfg.patience) and self.bad_evals >= self.cfg.patience)])
        if self.world > 1:
            dist.broadcast(stop, 0)
        return bool(stop.item())

    def _log(self, loss_sum: float, grad_norm: torch.Tensor, bar: tqdm) -> None:
        """TensorBoard's train curves and the bar's loss and throughput since the last log."""
        now = time.perf_counter()
        rate = self.tokens_log / max(now - self.t_log, 1e-9)
        self.t_log, self.tokens_log = now, 0
        for name, value in (("loss", loss_sum), ("lr", self.scheduler.get_last_lr()[0]),
                            ("grad_norm", float(grad_norm)), ("tokens_per_s", rate)):
            self.writer.add_scalar(f"train/{name}", value, self.step)
        bar.set_postfix(loss=f"{loss_sum:.3f}", tok_s=f"{rate:,.0f}")

    # ---- the loop
    def loop(self) -> TrainResult:
        """Steps until max_steps, the time limit, stop_after or early stopping; evaluates and saves."""
        cfg = self.cfg
        bar = TrainingBar(self.step, cfg.max_steps, cfg.max_minutes, disable=not (self.main and cfg.progress))
        stopped, first_step, autocast = "max_steps", self.step, self._autocast()
        self.t_start = self.t_log = time.perf_counter()
        batches = micro_batches(self.dataset, cfg, self.rank, self.world, self.step, self.device)
        self.model.train()
        while self.step < cfg.max_steps:
            if limit := bar.limit_reached(self.step - first_step, cfg.stop_after):
                stopped = limit
                break
            loss_sum, grad_norm = self._train_step(batches, autocast)
            bar.step_done(self.step)
            if self.main and (self.step % cfg.log_every == 0 or self.step == 1):
                self._log(loss_sum, grad_norm, bar)
            if (cfg.eval_every and self.step % cfg.eval_every == 0 or self.step == cfg.max_steps) \
                    and self._evaluate_and_save(bar):
                stopped = "early_stopping"
                break
            if self.main and cfg.save_every and self.step % cfg.save_every == 0:
                self.save("last")
        bar.end(stopped)
        return self._finish(stopped)

    def _finish(self, stopped: str) -> TrainResult:
        """The final `last` save, the log closed, every rank at the same point; what the run did."""
        if self.main:
            self.save("last")
            self.writer.flush()
            self.writer.close()
            log.info("stopped at step %d (%s)", self.step, stopped)
        total = self._seconds()
        if self.world > 1:
            dist.barrier()
        return TrainResult(self.out, self.step, self.tokens_seen, total, self.best, self.history, stopped)
