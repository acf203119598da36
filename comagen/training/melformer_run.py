"""Training the melformer: a llama over the frozen VQ-VAE's codes of beat-aligned renders, next-code
cross-entropy; validation in bits per beat beside a unigram and a bigram over the same codes."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from comagen.bundle.audio import audio_card, load_audio_bundle
from comagen.errors import ConfigError
from comagen.model import ModelConfig, build_model
from comagen.training.audio_run import AudioRun
from comagen.training.beat_data import Crops, beat_files, load_stream
from comagen.training.config import TrainConfig


def encode_files(codec: torch.nn.Module, files: list, device: torch.device, chunk_beats: int = 32) -> list[np.ndarray]:
    """Every file's codes, encoded a chunk of whole beats at a time."""
    spb, out = codec.cfg.samples_per_beat, []
    for file in files:
        wave = torch.from_numpy(load_stream(file, spb)).to(device)
        step = chunk_beats * spb
        out.append(torch.cat([codec.encode(wave[None, i:i + step])[0]
                              for i in range(0, len(wave), step)]).cpu().numpy())
    return out


def ngram_bits(train: list[np.ndarray], test: list[np.ndarray], size: int, order: int) -> float:
    """Bits per code of an add-one unigram (order 1) or bigram (order 2) fitted on train, scored on test."""
    if order == 1:
        counts = np.ones(size) + sum(np.bincount(s, minlength=size) for s in train)
        return float(-np.log2(counts / counts.sum())[np.concatenate(test)].mean())
    table = np.ones((size, size))
    for s in train:
        np.add.at(table, (s[:-1], s[1:]), 1)
    probs = table / table.sum(1, keepdims=True)
    return float(np.mean(np.concatenate([-np.log2(probs[s[:-1], s[1:]]) for s in test])))


def code_bits(model: torch.nn.Module, streams: list[np.ndarray], seq_len: int, device: torch.device) -> float:
    """The melformer's bits per code over each stream of codes, in windows of `seq_len` codes."""
    total, count = 0.0, 0
    for codes in streams:
        seq = torch.from_numpy(codes.astype(np.int64)).to(device)
        for start in range(0, len(seq) - 1, seq_len):
            window = seq[start:start + seq_len + 1][None]
            logits = model(window[:, :-1], torch.zeros(1, dtype=torch.long, device=device))
            total += float(F.cross_entropy(logits[0], window[0, 1:], reduction="sum"))
            count += window.shape[1] - 1
    return total / count / math.log(2)


class MelformerRun(AudioRun):
    measure = "bits_per_beat"
    trained = "melformer"

    def __init__(self, model_cfg: ModelConfig, cfg: TrainConfig) -> None:
        if model_cfg.arch != "llama":
            raise ConfigError(f"the melformer is a llama over codes, not {model_cfg.arch}")
        super().__init__(model_cfg, cfg)
        self.codec = load_audio_bundle(cfg.codec, self.device).models["codec"]
        for p in self.codec.parameters():
            p.requires_grad_(False)
        self.per_beat = self.codec.codes_per_beat
        self.model_cfg = ModelConfig.from_dict({**model_cfg.to_dict(), "vocab_size": self.codec.cfg.codebook_size,
                                                "n_composers": 1, "max_seq_len": cfg.seq_len})

    def _load(self) -> None:
        cfg = self.cfg
        train = encode_files(self.codec, beat_files(cfg.data, "train", cfg.train_files), self.device)
        files = beat_files(cfg.data, "validation")
        picks = np.linspace(0, len(files) - 1, min(cfg.eval_files, len(files))).astype(int)
        self.validation = [c[: cfg.eval_max_tokens]  # the n-grams and the model scored on the same codes
                           for c in encode_files(self.codec, [files[i] for i in picks], self.device)]
        self.crops = Crops([s.astype(np.int64) for s in train], cfg.seq_len + 1, cfg.seed, unit=self.per_beat)
        size = self.codec.cfg.codebook_size
        self.baselines = {f"{name}_bits_per_beat": round(ngram_bits(train, self.validation, size, order)
                                                         * self.per_beat, 2)
                          for name, order in (("unigram", 1), ("bigram", 2))}
        self.model = build_model(self.model_cfg)

    def _loss(self, batch: torch.Tensor) -> torch.Tensor:
        logits = self.model(batch[:, :-1], torch.zeros(len(batch), dtype=torch.long, device=batch.device))
        return F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())

    def _evaluate(self) -> dict[str, float]:
        """Bits per beat over each validation render in windows of seq_len codes."""
        return {"bits_per_beat": code_bits(self.model, self.validation, self.cfg.seq_len, self.device)
                * self.per_beat}

    def models(self) -> dict[str, torch.nn.Module]:
        return {"codec": self.codec, "melformer": self.model}

    def card(self) -> str:
        return audio_card(self.out.name, self.summary(), self.models())
