"""What a run reads before it builds a model: the bundle it starts from, the tokenizer and composer
table, the pieces it trains on and the pieces it validates on (MAESTRO's, or the caller's own)."""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, replace

import numpy as np

from comagen.bundle.checkpoint import Bundle, load_bundle
from comagen.bundle.composers import Composers
from comagen.errors import ConfigError
from comagen.model import ModelConfig
from comagen.music.tokenizer import PianoTokenizer
from comagen.training.config import TrainConfig
from comagen.training.data import TokenizedPiece, load_index, load_tokenized, select_split


@dataclass
class TrainData:
    """Pieces a caller has tokenized itself (a user's folder to fine-tune on) instead of MAESTRO's
    index, and the validation bits per note to beat (the base model's), so `best` is only written
    when training improves on where it started."""

    train: list[TokenizedPiece]
    validation: list[TokenizedPiece]
    baseline: float | None = None


@dataclass
class RunData:
    """The run's inputs, read once; `base` is the `init_from` bundle (None for a fresh model)."""

    base: Bundle | None
    tokenizer: PianoTokenizer
    composers: Composers
    train: list[TokenizedPiece]
    validation: list[TokenizedPiece]

    def model_config(self, requested: ModelConfig, seq_len: int) -> ModelConfig:
        """The config the run builds: the base bundle's architecture when there is one (whatever
        the config file says), else the requested one; sized to this vocabulary, composer table and
        crop length. A new object: the caller's config is left as it was."""
        cfg = copy.deepcopy(self.base.config if self.base is not None else requested)
        return replace(cfg, vocab_size=self.tokenizer.vocab_size, pad_id=self.tokenizer.pad_id,
                       n_composers=max(cfg.n_composers, len(self.composers)),
                       max_seq_len=max(cfg.max_seq_len, seq_len))


def load_run_data(cfg: TrainConfig, given: TrainData | None, *, progress: bool) -> RunData:
    """The caller's pieces (read with the base bundle's tokenizer) or MAESTRO's."""
    base = load_bundle(cfg.init_from) if cfg.init_from else None
    if given is None:
        return _maestro_data(cfg, base, progress)
    if base is None:
        raise ConfigError("pieces given to train() need init_from: the bundle whose tokenizer read them")
    return RunData(base, base.tokenizer, base.composers, given.train, given.validation)


def _maestro_data(cfg: TrainConfig, base: Bundle | None, progress: bool) -> RunData:
    """MAESTRO's train split (the first `train_files`) and a fixed spread of validation pieces."""
    data_dir = cfg.data or os.environ.get("COMAGEN_MAESTRO_DIR")
    if not data_dir:
        raise ConfigError("no data folder: pass --data DIR or set COMAGEN_MAESTRO_DIR")
    pieces = load_index(data_dir)
    if base is not None:
        tokenizer, composers = base.tokenizer, base.composers
    else:
        tokenizer = PianoTokenizer.load(cfg.tokenizer) if cfg.tokenizer else PianoTokenizer()
        composers = Composers.from_pieces(pieces)
    train_split = sorted(select_split(pieces, "train"), key=lambda p: p.key)
    if cfg.train_files:
        train_split = train_split[: cfg.train_files]
    train = load_tokenized(train_split, tokenizer, cfg.cache, progress=progress)
    val_all = select_split(pieces, "validation")
    picks = np.linspace(0, len(val_all) - 1, min(cfg.eval_files, len(val_all))).astype(int)
    validation = load_tokenized([val_all[i] for i in picks], tokenizer, cfg.cache, progress=False)
    return RunData(base, tokenizer, composers, train, validation)
