"""The training loop: one readable function around a model, a crop stream and an optimizer.

Runs on CPU, one GPU (bf16 autocast, optional torch.compile), or several processes under
`torchrun` (DDP; gloo on CPU). Checkpoints are bundles (see checkpoint.py) plus optimizer,
scheduler, RNG and step, so a stopped run resumes to the same losses as one left alone:
batch k is always built from the same seeded crops, whatever happened before.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint
from tqdm import tqdm

from comagen.bundle.checkpoint import load_bundle, load_trainer_state, restore_interrupted, save_bundle
from comagen.bundle.composers import Composers
from comagen.bundle.model_card import model_card
from comagen.errors import ConfigError
from comagen.files import folder_lock
from comagen.model import Decoder, ModelConfig, build_model
from comagen.music.tokenizer import PianoTokenizer
from comagen.training.data import Augment, CropDataset, TokenizedPiece, load_index, load_tokenized, select_split
from comagen.training.evaluate import evaluate_pieces


@dataclass
class TrainConfig:
    """Training knobs; every key is documented here and an unknown key is an error."""

    data: str | None = None  # MAESTRO folder (else $COMAGEN_MAESTRO_DIR)
    cache: str = "cache"  # token cache root
    tokenizer: str | None = None  # tokenizer.json (e.g. BPE); None = built-in REMI settings
    init_from: str | None = None  # a bundle to start from: its model config, weights, tokenizer, composers
    train_files: int = 0  # use only the first N train pieces (0 = all; for quick runs and tests)
    out: str = "runs/default"  # where checkpoints and TensorBoard logs go
    seq_len: int = 512
    batch_size: int = 16
    grad_accum: int = 1
    lr: float = 1e-3
    min_lr_ratio: float = 0.1  # cosine floor as a fraction of lr
    warmup_steps: int = 200
    schedule: str = "cosine"  # "cosine" (warmup then cosine) or "onecycle"
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


# ------------------------------------------------------------------------ the loop


@dataclass
class TrainData:
    """Pieces a caller has tokenized itself (a user's folder to fine-tune on) instead of MAESTRO's
    index, and the validation bits per note to beat (the base model's), so `best` is only written
    when training improves on where it started."""

    train: list[TokenizedPiece]
    validation: list[TokenizedPiece]
    baseline: float | None = None


@dataclass
class TrainResult:
    out: Path
    step: int
    tokens: int
    seconds: float
    best_bits_per_note: float | None
    losses: list[tuple[int, float]] = field(default_factory=list)
    stopped: str = ""


def _lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning-rate multiplier: linear warmup then cosine to `min_lr_ratio` (or OneCycle's shape)."""
    if cfg.schedule == "onecycle":
        peak = max(1, int(0.3 * cfg.max_steps))
        if step < peak:
            return 0.04 + 0.96 * step / peak
        frac = (step - peak) / max(1, cfg.max_steps - peak)
        return 1e-3 + (1 - 1e-3) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    frac = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))


def _use_activation_checkpointing(model: Decoder) -> None:
    """Recompute each block in the backward pass instead of storing its activations."""
    for block in model.blocks:
        plain = block.forward

        def forward(*args: Any, _plain: Any = plain, **kwargs: Any) -> Any:
            if torch.is_grad_enabled():
                return checkpoint(_plain, *args, use_reentrant=False, **kwargs)
            return _plain(*args, **kwargs)

        block.forward = forward


def _param_groups(model: Decoder, cfg: TrainConfig) -> list[dict[str, Any]]:
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


def _device(cfg: TrainConfig, rank: int) -> torch.device:
    if cfg.device != "auto":
        return torch.device(cfg.device)
    return torch.device(f"cuda:{rank % torch.cuda.device_count()}" if torch.cuda.is_available() else "cpu")


def _batch(dataset: CropDataset, step: int, micro: int, cfg: TrainConfig, rank: int,
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
        return _batch(self.dataset, step, micro, self.cfg, self.rank, self.world)


def _micro_batches(dataset: CropDataset, cfg: TrainConfig, rank: int, world: int, first_step: int,
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


def train(model_cfg: ModelConfig, cfg: TrainConfig, *, resume: bool = True,
          data: TrainData | None = None) -> TrainResult:
    """Train (or resume) a model as configured; writes `<out>/last`, `<out>/best` and TensorBoard logs.

    The writing process holds `<out>`'s lock for the whole run, so a second run aimed at the same
    folder stops at once with a clear error instead of overwriting the first one's checkpoints.
    """
    if int(os.environ.get("RANK", "0")) != 0:
        return _train(model_cfg, cfg, resume=resume, data=data)
    out = _writable_folder(Path(cfg.out))
    with folder_lock(out, wait=False) as held:
        if not held:
            raise ConfigError(f"{out}: another training run is writing there; stop it or pick another --out")
        return _train(model_cfg, cfg, resume=resume, data=data)


def _writable_folder(out: Path) -> Path:
    """`out`, created and proven writable, or one clear line saying why not."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=out).close()
    except OSError as exc:
        raise ConfigError(f"cannot write to --out {out}: {exc.strerror or exc}") from None
    return out


def _train(model_cfg: ModelConfig, cfg: TrainConfig, *, resume: bool, data: TrainData | None) -> TrainResult:
    return _Run(model_cfg, cfg, data).set_up(resume).loop()


class _Run:
    """One training run: set-up (processes, data, model, optimizer), resume, the loop of steps,
    evaluate-and-save; one method each, so the loop reads as the schedule it is."""

    def __init__(self, model_cfg: ModelConfig, cfg: TrainConfig, data: TrainData | None = None) -> None:
        self.model_cfg, self.cfg, self.data = model_cfg, cfg, data
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() and cfg.device != "cpu" else "gloo")
        self.main = self.rank == 0
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.device = _device(cfg, self.rank)
        self.out = Path(cfg.out)
        self.step, self.tokens_seen, self.elapsed = 0, 0, 0.0
        self.best = data.baseline if data else None
        self.history: list[tuple[int, float]] = []
        self.bad_evals = 0
        self.t_start = time.perf_counter()

    def _load_data(self) -> None:
        """Tokenizer, composers, the train crops and the validation pieces; sizes the model config."""
        cfg = self.cfg
        self.base = load_bundle(cfg.init_from) if cfg.init_from else None
        if self.base is not None:  # the bundle's architecture, whatever the config file says
            self.model_cfg = ModelConfig.from_dict(self.base.config.to_dict())
        model_cfg = self.model_cfg
        if self.data is not None:
            self._given_data()
        else:
            self._maestro_data()
        model_cfg.vocab_size = self.tokenizer.vocab_size
        model_cfg.pad_id = self.tokenizer.pad_id
        model_cfg.n_composers = max(model_cfg.n_composers, len(self.composers))
        model_cfg.max_seq_len = max(model_cfg.max_seq_len, cfg.seq_len)
        augment = Augment(cfg.augment_transpose, cfg.augment_velocity, cfg.augment_stretch)
        self.dataset = CropDataset(self.train_pieces, self.tokenizer, self.composers, cfg.seq_len, seed=cfg.seed,
                                   augment=augment)

    def _given_data(self) -> None:
        """The caller's pieces, read with the base bundle's tokenizer and composer table."""
        if self.base is None:
            raise ConfigError("pieces given to train() need init_from: the bundle whose tokenizer read them")
        self.tokenizer, self.composers = self.base.tokenizer, self.base.composers
        self.train_pieces, self.val_tok = self.data.train, self.data.validation

    def _maestro_data(self) -> None:
        """MAESTRO's train split (the first `train_files`) and a fixed spread of validation pieces."""
        cfg = self.cfg
        data_dir = cfg.data or os.environ.get("COMAGEN_MAESTRO_DIR")
        if not data_dir:
            raise ConfigError("no data folder: pass --data DIR or set COMAGEN_MAESTRO_DIR")
        pieces = load_index(data_dir)
        if self.base is not None:
            self.tokenizer, self.composers = self.base.tokenizer, self.base.composers
        else:
            self.tokenizer = PianoTokenizer.load(cfg.tokenizer) if cfg.tokenizer else PianoTokenizer()
            self.composers = Composers.from_pieces(pieces)
        train_split = sorted(select_split(pieces, "train"), key=lambda p: p.key)
        if cfg.train_files:
            train_split = train_split[: cfg.train_files]
        self.train_pieces = load_tokenized(train_split, self.tokenizer, cfg.cache,
                                           progress=self.main and cfg.progress)
        val_all = select_split(pieces, "validation")
        picks = np.linspace(0, len(val_all) - 1, min(cfg.eval_files, len(val_all))).astype(int)
        self.val_tok = load_tokenized([val_all[i] for i in picks], self.tokenizer, cfg.cache, progress=False)

    def set_up(self, resume: bool) -> _Run:
        """Data, model, optimizer and schedule; resume from `out/last`; compile/DDP; the log."""
        cfg = self.cfg
        self._load_data()
        torch.manual_seed(cfg.seed)
        self.model = build_model(self.model_cfg)
        if self.base is not None:  # start from the bundle's weights
            try:
                self.model.load_state_dict(self.base.model.state_dict())
            except RuntimeError:  # e.g. a longer seq_len than a learned position table holds
                raise ConfigError(f"{cfg.init_from}: its weights do not fit this run "
                                  f"(seq_len {cfg.seq_len}?)") from None
        self.model.to(self.device)
        self.optimizer = torch.optim.AdamW(_param_groups(self.model, cfg), lr=cfg.lr, betas=(0.9, cfg.beta2),
                                           fused=self.device.type == "cuda")
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: _lr_at(s, cfg))
        if self.main:  # a kill between a save's two renames leaves the previous bundle aside: bring it back
            restore_interrupted(self.out / "last")
            restore_interrupted(self.out / "best")
        if self.world > 1:
            dist.barrier()
        if resume and (self.out / "last" / "trainer.pt").is_file():
            self._resume()
        if cfg.activation_checkpointing:
            _use_activation_checkpointing(self.model)
        self.net: torch.nn.Module = torch.compile(self.model) if cfg.compile else self.model
        if self.world > 1:
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.net, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.writer = None
        if self.main:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.out / "tensorboard"), purge_step=self.step if self.step else None)
            print(f"{self.model_cfg.arch}: {self.model.num_parameters() / 1e6:.2f}M parameters, vocab "
                  f"{self.tokenizer.vocab_size}, {len(self.train_pieces)} train pieces, device {self.device}")
        return self

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
            print(f"resumed from {self.out / 'last'} at step {self.step}")

    # ---- saving
    def _seconds(self) -> float:
        return self.elapsed + time.perf_counter() - self.t_start

    def snapshot(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "torch_rng": torch.get_rng_state(), "step": self.step, "tokens": self.tokens_seen,
                "elapsed": self._seconds(), "best": -1.0 if self.best is None else self.best,
                "history": torch.tensor(self.history, dtype=torch.float64).reshape(-1, 2)}

    def summary(self) -> dict[str, Any]:
        return {"arch": self.model_cfg.arch, "parameters": self.model.num_parameters(), "step": self.step,
                "tokens_seen": self.tokens_seen, "train_seconds": round(self._seconds(), 1),
                "best_val_bits_per_note": self.best, "seq_len": self.cfg.seq_len}

    def save(self, name: str) -> None:
        card = model_card(self.out.name, self.summary(), self.model_cfg.to_dict())
        save_bundle(self.out / name, self.model, self.tokenizer, self.composers, summary=self.summary(), card=card,
                    trainer_state=self.snapshot(), train_config=asdict(self.cfg),
                    dtype=getattr(torch, self.cfg.save_dtype))

    # ---- the loop
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
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        return loss_sum, grad_norm

    def _evaluate_and_save(self, bar: tqdm) -> bool:
        """Validation bits per note; save `best` when it improves. True when patience has run out."""
        if self.main:
            self.model.eval()
            metrics = evaluate_pieces(self.model, self.val_tok, self.tokenizer, self.composers,
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
            bar.write(f"step {self.step}: val bits/note {bpn:.4f} (best {self.best:.4f})")
        stop = torch.tensor([int(bool(self.cfg.patience) and self.bad_evals >= self.cfg.patience)])
        if self.world > 1:
            dist.broadcast(stop, 0)
        return bool(stop.item())

    def _log(self, loss_sum: float, grad_norm: torch.Tensor, rate: float, bar: tqdm) -> None:
        for name, value in (("loss", loss_sum), ("lr", self.scheduler.get_last_lr()[0]),
                            ("grad_norm", float(grad_norm)), ("tokens_per_s", rate)):
            self.writer.add_scalar(f"train/{name}", value, self.step)
        bar.set_postfix(loss=f"{loss_sum:.3f}", tok_s=f"{rate:,.0f}")

    def loop(self) -> TrainResult:
        """Steps until max_steps, the time limit, stop_after or early stopping; evaluates and saves."""
        cfg, device = self.cfg, self.device
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if (device.type == "cuda" and cfg.bf16) \
            else torch.autocast("cpu", enabled=False)
        tokens_per_step = cfg.batch_size * cfg.grad_accum * cfg.seq_len * self.world
        deadline = time.monotonic() + cfg.max_minutes * 60 if cfg.max_minutes else None
        bar = tqdm(total=cfg.max_steps, initial=self.step, desc="training", unit="step",
                   disable=not (self.main and cfg.progress))
        stopped, first_step = "max_steps", self.step
        self.t_start = time.perf_counter()
        t_log, tokens_log = time.perf_counter(), 0
        batches = _micro_batches(self.dataset, cfg, self.rank, self.world, self.step, device)
        self.model.train()
        while self.step < cfg.max_steps:
            if deadline and time.monotonic() > deadline:
                stopped = "max_minutes"
                break
            if cfg.stop_after and self.step - first_step >= cfg.stop_after:
                stopped = "stop_after"
                break
            loss_sum, grad_norm = self._train_step(batches, autocast)
            self.step += 1
            self.tokens_seen += tokens_per_step
            tokens_log += tokens_per_step
            self.history.append((self.step, loss_sum))
            bar.update()
            if self.main and (self.step % cfg.log_every == 0 or self.step == 1):
                now = time.perf_counter()
                self._log(loss_sum, grad_norm, tokens_log / max(now - t_log, 1e-9), bar)
                t_log, tokens_log = now, 0
            if (cfg.eval_every and self.step % cfg.eval_every == 0 or self.step == cfg.max_steps) \
                    and self._evaluate_and_save(bar):
                stopped = "early_stopping"
                break
            if self.main and cfg.save_every and self.step % cfg.save_every == 0:
                self.save("last")
        bar.close()
        if self.main:
            self.save("last")
            self.writer.flush()
            self.writer.close()
        total = self._seconds()
        if self.world > 1:
            dist.barrier()
        return TrainResult(self.out, self.step, self.tokens_seen, total, self.best, self.history, stopped)
