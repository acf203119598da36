"""MAESTRO: the index, the token cache and the training crops.

The cache holds one uint16 array per piece under `<cache>/<tokenizer fingerprint>/`, so
changing any token setting gives a new folder and a rebuild, never stale ids.
"""

from __future__ import annotations

import csv
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import symusic
import torch
from tqdm import tqdm

from comagen.bundle.composers import Composers
from comagen.errors import ComagenError, DatasetError
from comagen.files import atomic_file, folder_lock, write_atomic
from comagen.music.midi import PIANO_HIGH, PIANO_LOW, load_score
from comagen.music.tokenizer import PianoTokenizer

CSV_NAME = "maestro-v3.0.0.csv"
MIDI_SUFFIXES = (".mid", ".midi")
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Piece:
    """One MIDI file with what the index says about it."""

    path: Path
    split: str
    composer: str
    title: str
    duration: float

    @property
    def key(self) -> str:
        """A stable file-name-safe id for the cache."""
        return self.path.stem.replace(" ", "_")


def load_index(data_dir: str | Path) -> list[Piece]:
    """The pieces of a MAESTRO-style folder (from its CSV), or of any folder of MIDI files."""
    root = Path(data_dir)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder (pass --data with your MAESTRO folder)")
    csv_path = root / CSV_NAME
    if not csv_path.is_file():
        found = sorted(p for p in root.rglob("*") if p.suffix.lower() in MIDI_SUFFIXES)
        if not found:
            raise DatasetError(f"{root}: no {CSV_NAME} and no .mid/.midi files inside")
        return [Piece(p, "all", "", p.stem, 0.0) for p in found]
    with csv_path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    need = {"canonical_composer", "canonical_title", "split", "midi_filename", "duration"}
    if not rows or not need <= set(rows[0]):
        raise DatasetError(f"{csv_path}: not a MAESTRO index (needs columns {sorted(need)})")
    return [
        Piece(root / r["midi_filename"], r["split"], r["canonical_composer"], r["canonical_title"],
              float(r["duration"]))
        for r in rows
    ]


def select_split(pieces: list[Piece], split: str | None) -> list[Piece]:
    """Pieces of one split; a folder without a CSV has only the split 'all'."""
    if split is None or split == "all" or all(p.split == "all" for p in pieces):
        return list(pieces)
    chosen = [p for p in pieces if p.split == split]
    if not chosen:
        raise DatasetError(f"no pieces in split {split!r} (splits: {sorted({p.split for p in pieces})})")
    return chosen


# ---------------------------------------------------------------- token cache


@dataclass
class TokenizeReport:
    cache_dir: Path
    done: int
    cached: int
    failed: list[tuple[str, str]]
    notes: int
    tokens: int


_WORKER_TOKENIZER: PianoTokenizer | None = None


def _init_worker(tokenizer: PianoTokenizer) -> None:
    global _WORKER_TOKENIZER
    _WORKER_TOKENIZER = tokenizer
    torch.set_num_threads(1)


def _tokenize_one(job: tuple[Piece, Path]) -> tuple[str, int, int, str | None]:
    piece, out = job
    tokenizer = _WORKER_TOKENIZER
    if tokenizer is None:
        raise DatasetError("a tokenizing worker started without its tokenizer (_init_worker sets it)")
    try:
        score = tokenizer.prepare(load_score(piece.path))
        ids = tokenizer.encode_prepared(score)
        if not ids:
            return piece.key, 0, 0, "no notes"
        with atomic_file(out) as fh:
            np.save(fh, np.asarray(ids, dtype=np.uint16))
        return piece.key, score.note_num(), len(ids), None
    except ComagenError as exc:
        return piece.key, 0, 0, str(exc)


def cache_folder(cache_root: str | Path, tokenizer: PianoTokenizer) -> Path:
    return Path(cache_root) / tokenizer.fingerprint()


def tokenize_pieces(
    pieces: list[Piece],
    tokenizer: PianoTokenizer,
    cache_root: str | Path,
    *,
    workers: int | None = None,
    progress: bool = True,
) -> TokenizeReport:
    """Tokenize pieces into the cache (skipping those already there); bad files are listed, not fatal.

    Safe for several processes on one cache (DDP ranks, two runs): one builds under the folder's
    lock while the others wait, then find everything cached.
    """
    folder = cache_folder(cache_root, tokenizer)
    note = f"waiting for another process that is building the token cache {folder}"
    with folder_lock(folder, waiting_note=note if progress else None):
        write_atomic(folder / "tokenizer.json", json.dumps(tokenizer.to_dict()))
        manifest = _read_manifest(folder)
        todo = [p for p in pieces if p.key not in manifest["pieces"] or not (folder / f"{p.key}.npy").exists()]
        for key, notes, tokens, error in _tokenize_all(todo, tokenizer, folder, workers, progress):
            if error is None:
                manifest["pieces"][key] = {"notes": notes, "tokens": tokens}
                manifest["failed"].pop(key, None)
            else:
                manifest["failed"][key] = error
        if todo:
            write_atomic(folder / MANIFEST, json.dumps(manifest, indent=0))
    wanted = {p.key for p in pieces}
    failed = sorted((k, v) for k, v in manifest["failed"].items() if k in wanted)
    stats = [manifest["pieces"][k] for k in wanted if k in manifest["pieces"]]
    return TokenizeReport(
        folder, len(todo), len(pieces) - len(todo), failed, sum(s["notes"] for s in stats),
        sum(s["tokens"] for s in stats),
    )


def _read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    return json.loads(path.read_text()) if path.exists() else {"pieces": {}, "failed": {}}


def _tokenize_all(todo: list[Piece], tokenizer: PianoTokenizer, folder: Path, workers: int | None,
                  progress: bool) -> list[tuple[str, int, int, str | None]]:
    """Tokenize `todo` into `folder`, in worker processes when there is more than one file."""
    workers = workers or max(1, min(os.cpu_count() or 1, len(todo)))
    jobs = [(p, folder / f"{p.key}.npy") for p in todo]
    results = []
    with tqdm(total=len(jobs), desc="tokenizing", unit="file", disable=not progress) as bar:
        if workers == 1 or len(jobs) <= 1:
            _init_worker(tokenizer)
            for job in jobs:
                results.append(_tokenize_one(job))
                bar.update()
        else:
            with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, initargs=(tokenizer,)) as pool:
                for res in pool.map(_tokenize_one, jobs, chunksize=4):
                    results.append(res)
                    bar.update()
    return results


@dataclass
class TokenizedPiece:
    piece: Piece
    ids: np.ndarray
    notes: int


def load_tokenized(
    pieces: list[Piece], tokenizer: PianoTokenizer, cache_root: str | Path, *, progress: bool = True
) -> list[TokenizedPiece]:
    """Token arrays for pieces, tokenizing whatever the cache lacks first; failed files are skipped."""
    report = tokenize_pieces(pieces, tokenizer, cache_root, progress=progress)
    manifest = _read_manifest(report.cache_dir)["pieces"]
    out = []
    for p in pieces:
        if p.key in manifest:
            out.append(TokenizedPiece(p, np.load(report.cache_dir / f"{p.key}.npy"), manifest[p.key]["notes"]))
    return out


# ---------------------------------------------------------------- training crops


@dataclass(frozen=True)
class Augment:
    """Token-level augmentation: transpose by up to ±`transpose` semitones (kept on the piano),
    shift velocity by up to ±`velocity` bins, stretch time by up to ±`stretch` (0.1 = 10 %)."""

    transpose: int = 0
    velocity: int = 0
    stretch: float = 0.0


class _TokenMaps:
    """Lookup tables that move pitch and velocity token ids, built once per tokenizer."""

    def __init__(self, tokenizer: PianoTokenizer) -> None:
        vocab = tokenizer.vocab
        self.pitch = np.full(vocab.size, -1, dtype=np.int64)
        self.velocity = np.full(vocab.size, -1, dtype=np.int64)
        self.pitch_id = np.full(128, -1, dtype=np.int64)
        for i in vocab.pitch_ids:
            self.pitch[i] = vocab.value[i]
            self.pitch_id[vocab.value[i]] = i
        self.velocity_by_rank = np.asarray(vocab.velocity_ids, dtype=np.int64)
        self.velocity[self.velocity_by_rank] = np.arange(len(self.velocity_by_rank))


class CropDataset(torch.utils.data.Dataset):
    """Fixed-length random crops of [BOS] + piece + [EOS], padded, with a loss mask and composer id.

    Item i is drawn from its own generator seeded by (seed, epoch, i), so a run is deterministic
    for a seed whatever the worker layout, and resuming at a step reproduces the same batches.
    """

    def __init__(
        self,
        pieces: list[TokenizedPiece],
        tokenizer: PianoTokenizer,
        composers: Composers,
        seq_len: int,
        *,
        seed: int = 0,
        augment: Augment = Augment(),
        length: int = 1 << 30,
    ) -> None:
        if not pieces:
            raise DatasetError("no tokenized pieces to train on")
        self.pieces = pieces
        self.tokenizer = tokenizer
        self.seq_len = seq_len
        self.seed = seed
        self.augment = augment
        self.length = length
        self.composer_ids = [composers.id_of(p.piece.composer) for p in pieces]
        weights = np.array([len(p.ids) for p in pieces], dtype=np.float64)
        self.cum = np.cumsum(weights / weights.sum())
        self.maps = _TokenMaps(tokenizer) if (augment.transpose or augment.velocity) else None
        if (augment.transpose or augment.velocity) and tokenizer.is_bpe:
            raise DatasetError("pitch/velocity augmentation works on plain REMI ids, not BPE ids")

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng((self.seed, index))
        k = int(np.searchsorted(self.cum, rng.random(), side="right"))
        k = min(k, len(self.pieces) - 1)
        ids = self.pieces[k].ids.astype(np.int64)
        if self.augment.stretch:
            ids = self._stretch(ids, rng)
        full = np.concatenate([[self.tokenizer.bos_id], ids, [self.tokenizer.eos_id]])
        need = self.seq_len + 1
        start = int(rng.integers(0, max(len(full) - need, 0) + 1))
        window = full[start : start + need]
        mask = np.ones(need - 1, dtype=np.float32)
        if len(window) < need:
            mask[len(window) - 1 :] = 0.0
            window = np.concatenate([window, np.full(need - len(window), self.tokenizer.pad_id)])
        window = self._shift(window, rng)
        return {
            "input": torch.from_numpy(window[:-1].copy()),
            "target": torch.from_numpy(window[1:].copy()),
            "mask": torch.from_numpy(mask),
            "composer": torch.tensor(self.composer_ids[k]),
        }

    def _shift(self, window: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.maps is None:
            return window
        out = window.copy()
        if self.augment.transpose:
            pitches = self.maps.pitch[window]
            present = pitches[pitches >= 0]
            if len(present):
                low = max(-self.augment.transpose, PIANO_LOW - int(present.min()))
                high = min(self.augment.transpose, PIANO_HIGH - int(present.max()))
                shift = int(rng.integers(low, high + 1)) if high >= low else 0
                sel = pitches >= 0
                out[sel] = self.maps.pitch_id[pitches[sel] + shift]
        if self.augment.velocity:
            ranks = self.maps.velocity[window]
            sel = ranks >= 0
            shift = int(rng.integers(-self.augment.velocity, self.augment.velocity + 1))
            top = len(self.maps.velocity_by_rank) - 1
            out[sel] = self.maps.velocity_by_rank[np.clip(ranks[sel] + shift, 0, top)]
        return out

    def _stretch(self, ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Re-tokenize a bar-aligned excerpt with its timing scaled (decode, stretch, encode)."""
        factor = 1.0 + float(rng.uniform(-self.augment.stretch, self.augment.stretch))
        bar_id = self.tokenizer.bar_id
        bars = np.flatnonzero(ids == bar_id) if bar_id is not None else np.zeros(0, dtype=int)
        start = int(bars[rng.integers(len(bars))]) if len(bars) else 0
        excerpt = ids[start : start + 2 * self.seq_len]
        score = self.tokenizer.decode_ids(excerpt.tolist())
        for track in score.tracks:
            notes = track.notes.numpy()
            if len(notes["time"]):
                track.notes = symusic.Note.from_numpy(
                    time=np.round(notes["time"] * factor).astype(np.int32),
                    duration=np.maximum(np.round(notes["duration"] * factor), 1).astype(np.int32),
                    pitch=notes["pitch"],
                    velocity=notes["velocity"],
                    ttype="tick",
                )
        return np.asarray(self.tokenizer.encode_prepared(score), dtype=np.int64)
