"""The checkpoint bundle (DESIGN §6): a folder anyone can read without unpickling code.

    config.json        model config + tokenizer settings + training summary
    tokenizer.json     the exact tokenizer (BPE merges included)
    composers.json     conditioning id <-> composer name
    model.safetensors  weights
    MODEL_CARD.md      what it is, what it was trained on, what it measured
    sampling.json      (optional) the sampling defaults tuned for it, e.g. {"key_strength": 1.0};
                       without it the global defaults of comagen.generation.settings apply
    trainer.pt         (training checkpoints only) optimizer, scheduler, RNG, step; loaded with
                       torch.load(weights_only=True), which refuses arbitrary objects

A bundle is written into a temporary sibling folder that takes the old one's place in one atomic
swap, so a crash never leaves a half-written checkpoint where a good one was.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_model, save_model
from torch.overrides import TorchFunctionMode

from comagen.bundle.composers import Composers
from comagen.errors import CheckpointError, ComagenError
from comagen.files import exchange
from comagen.model import Decoder, ModelConfig, build_model
from comagen.music.tokenizer import PianoTokenizer

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
    sampling: dict[str, float | list[int]] = field(default_factory=dict)  # sampling.json: tuned defaults by name

    @property
    def name(self) -> str:
        return self.path.name


def staging_folder(path: Path) -> Path:
    """A new temp folder beside bundle `path` to write into before it takes the bundle's place (an
    interrupted earlier swap is put right first); CheckpointError when it cannot be made."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        restore_interrupted(path)
        return Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as exc:
        raise CheckpointError(f"cannot write checkpoint {path}: {exc.strerror or exc}") from None


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
    with staged_bundle(path) as tmp:
        _write_files(tmp, model, tokenizer, composers, summary, card, trainer_state, train_config, dtype)
    return path


@contextmanager
def staged_bundle(path: Path) -> Iterator[Path]:
    """A staging folder for a bundle's files, which takes the bundle's place in one step when the block
    ends; a write that fails (a full disk, an unwritable folder) removes it and raises one
    CheckpointError line, the previous bundle left as it was. Every bundle writer goes through here."""
    tmp = staging_folder(path)
    try:
        yield tmp
        _replace_folder(tmp, path)
    except (OSError, SafetensorError, RuntimeError) as exc:  # the last two: safetensors' and torch.save's I/O errors
        shutil.rmtree(tmp, ignore_errors=True)
        kept = " (the previous checkpoint is kept)" if path.is_dir() else ""
        reason = getattr(exc, "strerror", None) or _short(exc)
        raise CheckpointError(f"cannot write checkpoint {path}: {reason}{kept}") from None


def write_bundle_files(tmp: Path, config: dict[str, Any], card: str | None,
                       trainer_state: dict[str, Any] | None) -> None:
    """The files every bundle has beside its weights: config.json, the model card, the trainer state."""
    (tmp / "config.json").write_text(json.dumps(config, indent=1))
    if card is not None:
        (tmp / "MODEL_CARD.md").write_text(card)
    if trainer_state is not None:
        torch.save(trainer_state, tmp / "trainer.pt")


def _write_files(tmp: Path, model: Decoder, tokenizer: PianoTokenizer, composers: Composers,
                 summary: dict[str, Any] | None, card: str | None, trainer_state: dict[str, Any] | None,
                 train_config: dict[str, Any] | None, dtype: torch.dtype) -> None:
    config = {
        "model": model.cfg.to_dict(),
        "tokenizer": tokenizer.to_dict()["settings"],
        "train": train_config or {},
        "summary": summary or {},
    }
    write_bundle_files(tmp, config, card, trainer_state)
    tokenizer.save(tmp / "tokenizer.json")
    composers.save(tmp / "composers.json")
    plain = _unwrap(model)
    if dtype != torch.float32:  # a copy, so training goes on in full precision
        plain = copy.deepcopy(plain).to(dtype)
    save_model(plain, str(tmp / "model.safetensors"))


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
    """Load a bundle, or raise `CheckpointError` with one line saying what is wrong.

    A bundle may come from anyone, so nothing in it runs code (JSON and safetensors only), no
    file may lead outside the folder (a symlink to /etc/passwd is refused, not read), and the
    config must describe exactly the tensors in the weights file, checked on its header before
    any memory is allocated (a config claiming a huge model cannot exhaust memory)."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such checkpoint folder")
    missing = [f for f in FILES if not (path / f).is_file()]
    if missing:
        raise CheckpointError(f"{path}: not a comagen checkpoint (missing {', '.join(missing)})")
    for name in FILES:
        size = _inside_bundle(path, name).stat().st_size
        if name.endswith(".json") and size > MAX_JSON_BYTES:
            raise CheckpointError(f"{path / name}: {size / 1e6:.0f} MB is too large for a checkpoint's JSON file")
    config = _read_json(path / "config.json")
    try:
        if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
            raise TypeError("expected an object with a 'model' object")
        if not isinstance(config.get("summary", {}), dict):
            raise TypeError("'summary' must be an object")
        model_cfg = ModelConfig.from_dict(config["model"])
    except ComagenError as exc:
        raise CheckpointError(f"{path / 'config.json'}: {_short(exc)}") from None
    except Exception as exc:  # any wrong type or value (ModelConfig compares and iterates what it is given)
        raise CheckpointError(f"{path / 'config.json'}: unreadable ({_short(exc)})") from None
    try:
        tokenizer = PianoTokenizer.load(path / "tokenizer.json")
    except Exception as exc:  # miditok raises whatever a malformed file provokes
        raise CheckpointError(f"{path / 'tokenizer.json'}: not a tokenizer this code reads ({_short(exc)})") from None
    table = _read_json(path / "composers.json")
    if not isinstance(table, dict) or set(table) != {str(i) for i in range(len(table))} \
            or not all(isinstance(n, str) for n in table.values()):
        raise CheckpointError(f"{path / 'composers.json'}: not a table of composer names by id")
    composers = Composers.from_table(table)
    if tokenizer.vocab_size != model_cfg.vocab_size or len(composers) > model_cfg.n_composers:
        raise CheckpointError(f"{path}: the tokenizer ({tokenizer.vocab_size} tokens) or composers "
                              f"({len(composers)}) do not fit the model (vocab {model_cfg.vocab_size}, "
                              f"{model_cfg.n_composers} composers)")
    weights = path / "model.safetensors"
    _check_shapes(weights, model_cfg)
    try:
        model = build_model(model_cfg)
        missing_keys, unexpected = load_model(model, str(weights), strict=False, device=str(device))
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{weights}: truncated or not our weights ({_short(exc)})") from None
    tied = {"head.weight", "token_emb.weight"} if model_cfg.tie_embeddings else set()
    if unexpected or len(set(missing_keys) - tied) or len(set(missing_keys) & tied) > 1:
        raise CheckpointError(f"{weights}: weights do not match the config "
                              f"(missing {list(missing_keys)[:3]}, unexpected {list(unexpected)[:3]})")
    model.to(device).eval()
    return Bundle(path, model, model_cfg, tokenizer, composers, config.get("summary", {}), read_sampling(path))


def read_sampling(path: Path) -> dict[str, float | list[int]]:
    """A bundle's tuned generation defaults (sampling.json, optional) as plain data: an object of numbers
    by setting name, and the streaming `windows` as a list of whole numbers. What the names and values
    mean is generation's to judge (`comagen.generation.settings.tuned_settings`); anything but such an
    object is refused here."""
    file = path / "sampling.json"
    if not file.exists():
        return {}
    _inside_bundle(path, "sampling.json")
    if file.stat().st_size > 65536:
        raise CheckpointError(f"{file}: too large for a table of sampling defaults")
    table = _read_json(file)
    if not isinstance(table, dict) or not all(_number(v) or (k == "windows" and isinstance(v, list) and v and all(
            _number(w) and float(w).is_integer() for w in v)) for k, v in table.items()):
        raise CheckpointError(f"{file}: expected an object of numbers by sampling setting name "
                              "(and windows as a list of whole numbers)")
    return dict(table)


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


MAX_JSON_BYTES = 64 * 1024 * 1024  # a BPE tokenizer.json is a few MB; anything far larger is not ours


def _inside_bundle(folder: Path, name: str) -> Path:
    """`folder / name`, refused when it (through symlinks) lies outside the bundle folder."""
    file = folder / name
    root = folder.resolve()
    target = file.resolve()
    if target.parent != root:
        raise CheckpointError(f"{file}: leads outside the checkpoint folder (to {target}); refusing to read it")
    return file


def _read_json(file: Path) -> Any:
    """Parse a bundle's JSON file; CheckpointError for anything else (not UTF-8 JSON, or nested too
    deep for the parser)."""
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise CheckpointError(f"{file}: unreadable ({_short(exc)})") from None


class _NoInit(TorchFunctionMode):
    """Skips torch.nn.init's fills while a skeleton is built on the meta device: the values are never
    read, and meta's random fills import torch's compiler (a second of a process's start)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        kwargs = kwargs or {}
        if getattr(func, "__module__", None) == "torch.nn.init":
            return args[0] if args else kwargs["tensor"]
        return func(*args, **kwargs)


def _check_shapes(weights: Path, cfg: ModelConfig) -> None:
    """The tensors the config implies against those the weights file lists (its header only):
    a mismatch is refused before the model is built, so a forged config allocates nothing."""
    try:
        with safe_open(str(weights), framework="pt") as f:
            stored = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{weights}: truncated or not our weights ({_short(exc)})") from None
    if cfg.depth > len(stored):  # every layer has tensors; this bounds the skeleton built below
        raise CheckpointError(f"{weights}: weights do not match the config (depth {cfg.depth}, "
                              f"{len(stored)} tensors)")
    try:
        with torch.device("meta"), _NoInit():  # shapes only: no memory, no initial values
            expected = {k: tuple(v.shape) for k, v in build_model(cfg).state_dict().items()}
    except Exception as exc:  # a config the model code cannot build
        raise CheckpointError(f"{weights}: the config describes no buildable model ({_short(exc)})") from None
    wrong = sorted(k for k in stored if expected.get(k, stored[k]) != stored[k])
    unexpected = sorted(set(stored) - set(expected))
    if wrong or unexpected:
        raise CheckpointError(f"{weights}: weights do not match the config (shapes differ for {wrong[:3]}, "
                              f"unexpected {unexpected[:3]})")


def load_trainer_state(path: str | Path) -> dict[str, Any]:
    """Optimizer/scheduler/RNG/step of a training checkpoint, loaded without arbitrary unpickling
    (torch's weights_only loader refuses any pickled object that is not plain data)."""
    file = Path(path) / "trainer.pt"
    if not file.is_file():
        raise CheckpointError(f"{path}: no trainer.pt to resume from")
    _inside_bundle(Path(path), "trainer.pt")
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file; all mean the same here
        raise CheckpointError(f"{file}: unreadable training state ({_short(exc)})") from None


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:160]
