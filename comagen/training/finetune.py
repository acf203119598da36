"""Fine-tuning a shipped bundle on a folder of the user's own MIDI files, on a CPU, in minutes.

The bundle's tokenizer, composer table and model config are kept (nothing is retrained but the
weights), so the result is an ordinary bundle the app and `generate` load like any other. The
training loop is the trainer's; this module only reads the folder (every bad file is one line and
skipped), holds out a deterministic validation share of it, picks small-data defaults and writes
the best bundle with a model card that says what it was tuned on.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from comagen.bundle.checkpoint import FILES, Bundle, load_bundle, save_bundle
from comagen.bundle.model_card import finetune_card
from comagen.errors import ComagenError, ConfigError, DatasetError
from comagen.music.midi import load_score
from comagen.music.tokenizer import PianoTokenizer
from comagen.training.config import TrainConfig
from comagen.training.data import MIDI_SUFFIXES, Piece, TokenizedPiece
from comagen.training.evaluate import evaluate_pieces
from comagen.training.run import TrainResult
from comagen.training.run_data import TrainData
from comagen.training.trainer import train

VALIDATION_SHARE = 0.1  # of the usable files, at least one
VALIDATION_MAX_FILES = 8  # each evaluation scores all of them, so it stays a small part of a step budget
SINGLE_FILE_TAIL = 0.2  # one usable file: its last fifth (from a bar line) is the validation part


@dataclass
class FolderData:
    """A user's folder read with a bundle's tokenizer: usable pieces and one line per skipped file."""

    root: Path
    pieces: list[TokenizedPiece]
    skipped: list[str] = field(default_factory=list)


@dataclass
class FinetuneResult:
    """What a fine-tuning run did; `improved` False means the output holds the base weights."""

    out: Path
    base: str
    data: str
    train_files: list[str]
    validation_files: list[str]
    skipped: list[str]
    steps: int
    minutes: float
    before: float
    after: float
    improved: bool
    stopped: str

    def to_dict(self) -> dict:
        return {**asdict(self), "out": str(self.out)}


def finetune_config(work: Path, *, minutes: float, steps: int, seq_len: int, batch_size: int = 8,
                    lr: float = 2e-4, eval_every: int = 20, seed: int = 0, threads: int = 0,
                    bpe: bool = False, progress: bool = True) -> TrainConfig:
    """Small-data defaults: a learning rate about a tenth of pre-training's, a short warm-up and then a
    flat rate (the run is cut by the clock, so a decay would end at an unknown step), frequent
    evaluation with early stopping, and augmentation on (transposition, velocity, a little tempo)."""
    return TrainConfig(
        out=str(work), seq_len=seq_len, batch_size=batch_size, lr=lr, warmup_steps=10, min_lr_ratio=1.0,
        weight_decay=0.01, max_steps=steps, max_minutes=minutes, eval_every=eval_every, patience=4,
        eval_max_tokens=4096, save_every=0, log_every=5, seed=seed, threads=threads,
        augment_transpose=0 if bpe else 3, augment_velocity=0 if bpe else 1, augment_stretch=0.05,
        device="cpu", progress=progress)


def find_midi_files(root: Path) -> list[Path]:
    """Every .mid/.midi file under `root` (any depth, any case of the suffix), in a stable order."""
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder")
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in MIDI_SUFFIXES and p.is_file())


def read_folder(root: str | Path, tokenizer: PianoTokenizer, composer: str = "", *,
                progress: bool = True, report: Callable[[str], None] = print) -> FolderData:
    """Tokenize every MIDI file under `root`; a bad one is reported in one line and skipped, and a
    folder with nothing usable is one clear error."""
    root = Path(root)
    files = find_midi_files(root)
    if not files:
        raise DatasetError(f"{root}: no .mid or .midi files inside (searched all subfolders)")
    data = FolderData(root, [])
    for path in tqdm(files, desc="reading MIDI", unit="file", disable=not progress):
        name = path.relative_to(root).as_posix()
        try:
            ids, notes = _tokenize(path, tokenizer)
        except ComagenError as exc:
            data.skipped.append(f"{name}: {_reason(exc, path.name)}")
            report(f"skipped {data.skipped[-1]}")
            continue
        piece = Piece(path, "all", composer, name, 0.0)
        data.pieces.append(TokenizedPiece(piece, np.asarray(ids, dtype=np.uint16), notes))
    if not data.pieces:
        raise DatasetError(f"{root}: none of its {len(files)} MIDI file(s) is usable (see the lines above)")
    return data


def _tokenize(path: Path, tokenizer: PianoTokenizer) -> tuple[list[int], int]:
    """Token ids and note count of one file, or a `ComagenError` that says why it cannot be used."""
    try:
        score = tokenizer.prepare(load_score(path))
        ids = tokenizer.encode_prepared(score)
    except OSError as exc:
        raise DatasetError(f"unreadable ({exc.strerror or exc})") from None
    except ComagenError:
        raise
    except Exception as exc:  # miditok/symusic on strange but parseable files: still one line
        raise DatasetError(f"could not be tokenized ({type(exc).__name__}: {exc})") from None
    if not ids:
        raise DatasetError("no notes on the piano after tokenizing")
    return ids, score.note_num()


def _reason(exc: Exception, file_name: str) -> str:
    """The error's message without the file name it starts with (the caller names the file)."""
    text = str(exc)
    return text[len(file_name) + 2:] if text.startswith(f"{file_name}: ") else text


def split_validation(pieces: list[TokenizedPiece], tokenizer: PianoTokenizer
                     ) -> tuple[list[TokenizedPiece], list[TokenizedPiece]]:
    """(train, validation): a tenth of the files (1 to 8) chosen by a hash of their relative path, so
    the same folder always splits the same way and adding a file moves no other; a lone file gives
    its last fifth, from a bar line, to validation."""
    if len(pieces) == 1:
        return _split_one(pieces[0], tokenizer)
    count = min(VALIDATION_MAX_FILES, max(1, round(len(pieces) * VALIDATION_SHARE)))
    ranked = sorted(pieces, key=lambda p: hashlib.sha256(p.piece.title.encode()).hexdigest())
    held = {id(p) for p in ranked[:count]}
    return [p for p in pieces if id(p) not in held], [p for p in pieces if id(p) in held]


def _split_one(piece: TokenizedPiece, tokenizer: PianoTokenizer) -> tuple[list[TokenizedPiece], list[TokenizedPiece]]:
    ids = piece.ids
    bars = np.flatnonzero(ids == tokenizer.bar_id) if tokenizer.bar_id is not None else np.zeros(0, dtype=int)
    target = int(len(ids) * (1 - SINGLE_FILE_TAIL))
    cut = int(bars[np.argmin(np.abs(bars - target))]) if len(bars) else target
    if cut < 16 or len(ids) - cut < 16:
        raise DatasetError(f"{piece.piece.title}: the only usable file is too short to hold some out for validation")

    def part(chunk: np.ndarray) -> TokenizedPiece:
        return TokenizedPiece(piece.piece, chunk, max(1, round(piece.notes * len(chunk) / len(ids))))

    return [part(ids[:cut])], [part(ids[cut:])]


def check_out(out: Path, data_root: Path, base: Path) -> None:
    """Refuse an --out that would overwrite the base, something other than a bundle, or the data."""
    if out.resolve() == base.resolve():
        raise ConfigError(f"--out {out} is the base bundle itself; pick a new folder (e.g. runs/finetuned/NAME)")
    if out.resolve() == data_root.resolve() or data_root.resolve() in out.resolve().parents:
        raise ConfigError(f"--out {out} is inside the data folder; pick a folder outside it")
    if out.is_dir() and any(out.iterdir()) and not all((out / f).is_file() for f in FILES):
        raise ConfigError(f"--out {out} exists and is not a checkpoint bundle; pick an empty or new folder")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; pick a folder")


def validation_bits(model: torch.nn.Module, pieces: list[TokenizedPiece], base: Bundle, cfg: TrainConfig) -> float:
    """Validation bits per note, measured exactly as the trainer measures it."""
    metrics = evaluate_pieces(model, pieces, base.tokenizer, base.composers, seq_len=cfg.seq_len,
                              max_tokens=cfg.eval_max_tokens)
    return float(metrics["bits_per_note"])


def finetune(base_path: str | Path, data_root: str | Path, out: str | Path, *, minutes: float = 10.0,
             steps: int = 10_000, composer: str = "", seq_len: int | None = None, batch_size: int = 8,
             lr: float = 2e-4, eval_every: int = 20, seed: int = 0, threads: int = 0, progress: bool = True,
             report: Callable[[str], None] = print) -> FinetuneResult:
    """Adapt the bundle at `base_path` to the MIDI files under `data_root`; write the best bundle to
    `out` (the base weights again when no step beat them on the held-out files)."""
    base = load_bundle(base_path)
    out, data_root = Path(out), Path(data_root)
    check_out(out, data_root, base.path)
    tag = base.composers.names[base.composers.find(composer)] if composer else ""
    folder = read_folder(data_root, base.tokenizer, tag, progress=progress, report=report)
    train_set, validation = split_validation(folder.pieces, base.tokenizer)
    report(f"{len(folder.pieces)} usable file(s), {len(folder.skipped)} skipped; {len(train_set)} to train on, "
           f"validation on: {', '.join(p.piece.title for p in validation)}"
           + (" (the last fifth of the only file)" if len(folder.pieces) == 1 else ""))
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.finetune-", dir=out.parent))
    try:
        cfg = finetune_config(work, minutes=minutes, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                              seq_len=seq_len or int(base.summary.get("seq_len") or base.config.max_seq_len),
                              eval_every=eval_every, threads=threads, bpe=base.tokenizer.is_bpe, progress=progress)
        cfg.init_from = str(base.path)
        before = validation_bits(base.model, validation, base, cfg)
        report(f"validation bits per note before: {before:.3f}")
        run = train(base.config, cfg, resume=False,  # init_from: the trainer takes the base's own config
                    data=TrainData(train_set, validation, baseline=before))
        best, after = _pick_best(work, run, cfg, base, validation, before, report)
        result = FinetuneResult(
            out, base.name, data_root.name, [p.piece.title for p in train_set], [p.piece.title for p in validation],
            folder.skipped, run.step, round(run.seconds / 60, 2), before, after, best is not None, run.stopped)
        _write(result, best or base, base, cfg, int(best.summary.get("step", 0)) if best else 0)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return result


def _pick_best(work: Path, run: TrainResult, cfg: TrainConfig, base: Bundle, validation: list[TokenizedPiece],
               before: float, report: Callable[[str], None]) -> tuple[Bundle | None, float]:
    """The best evaluated bundle and its bits per note (None: no step beat the base). A run the
    clock stopped between two evaluations is scored where it stopped, so its last steps count."""
    best = load_bundle(work / "best") if (work / "best").is_dir() else None
    score = run.best_bits_per_note if best is not None else before
    if run.stopped == "max_minutes" and run.step % cfg.eval_every and (work / "last").is_dir():
        last = load_bundle(work / "last")
        bits = validation_bits(last.model, validation, base, cfg)
        report(f"step {run.step} (stopped by the clock): val bits/note {bits:.4f}")
        if bits < score:
            best, score = last, bits
    return best, float(score)


def _write(result: FinetuneResult, chosen: Bundle, base: Bundle, cfg: TrainConfig, best_step: int) -> None:
    """The output bundle: the chosen weights, the base's tokenizer and composers, a card naming the
    base and the data (by folder name only: a bundle travels, a machine's paths should not)."""
    summary = {"arch": base.config.arch, "parameters": chosen.model.num_parameters(), "step": best_step,
               "seq_len": cfg.seq_len, "best_val_bits_per_note": result.after,
               "finetuned_from": base.name, "finetune_data": result.data,
               "finetune_before_bits_per_note": result.before}
    card = finetune_card(result.out.name, base.name, result.to_dict(), best_step, chosen.config.to_dict())
    train_config = {**asdict(cfg), "out": result.out.name, "init_from": base.name, "data": result.data}
    save_bundle(result.out, chosen.model, base.tokenizer, base.composers, summary=summary, card=card,
                train_config=train_config)
