"""One flat, JSON-friendly model config for every architecture, validated on load."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from comagen.errors import ConfigError

ARCHS = ("conformer", "gpt2", "music_transformer", "llama", "xtransformers", "pianoroll", "vqvae")
POSITIONS = ("xpos", "dpb", "sinusoidal")  # sinusoidal: gpt2 (instead of its learned table), pianoroll
BACKENDS = ("auto", "blockwise", "flex")


@dataclass
class ModelConfig:
    """Every field of every architecture; fields an architecture does not use are ignored by it.

    A single flat schema keeps checkpoints and `key=value` overrides trivial: the JSON in a
    checkpoint is exactly `to_dict()`.
    """

    arch: str = "conformer"
    vocab_size: int = 512
    n_composers: int = 64  # embedding rows; id 0 means "no composer" (classifier-free guidance)
    dim: int = 256
    depth: int = 4
    heads: int = 4
    dropout: float = 0.1
    max_seq_len: int = 1024  # training crop length; also the gpt2 position-table size
    tie_embeddings: bool = True
    pad_id: int = 0
    # conformer
    windows: list[int] = field(default_factory=lambda: [32, 128])
    window_cap: int = 1024  # widest per-request window override
    position: str = "xpos"
    conv_kernel: int = 15
    ff_mult: int = 4
    hyper_streams: int = 1
    hyper_dynamic: bool = True  # input-dependent stream mixing on top of the static one (n > 1)
    global_layers: list[int] = field(default_factory=list)
    attention_backend: str = "auto"
    # llama
    kv_heads: int = 2
    # music_transformer
    max_relative: int = 512
    # vqvae (beat-aligned audio codec; `dim` is its latent width)
    samples_per_beat: int = 4000  # the codec's own rate: 8 kHz at 120 bpm (bench/melformer.py)
    codec_strides: list[int] = field(default_factory=lambda: [2, 5, 5, 5])  # 4000 / 250 = 16 codes per beat
    codec_channels: int = 16  # at the input rate; doubles after each stride, up to 128
    codebook_size: int = 512

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        valid = [f.name for f in fields(cls)]
        for key in d:
            if key not in valid:
                raise ConfigError(f"unknown model config key {key!r}; valid keys: {', '.join(valid)}")
        cfg = cls(**{k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in d.items()})
        cfg.validate()
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def validate(self) -> None:
        def bad(key: str, why: str) -> ConfigError:
            return ConfigError(f"model config {key}={getattr(self, key)!r}: {why}")

        if self.arch not in ARCHS:
            raise bad("arch", f"must be one of {', '.join(ARCHS)}")
        if self.position not in POSITIONS:
            raise bad("position", f"must be one of {', '.join(POSITIONS)}")
        if (self.arch == "conformer") == (self.position == "sinusoidal") and self.arch in ("conformer", "pianoroll"):
            raise bad("position", "the conformer takes xpos or dpb, the pianoroll sinusoidal")
        if self.attention_backend not in BACKENDS:
            raise bad("attention_backend", f"must be one of {', '.join(BACKENDS)}")
        for key in ("vocab_size", "n_composers", "dim", "depth", "heads", "max_seq_len", "conv_kernel", "ff_mult",
                    "hyper_streams", "kv_heads", "max_relative", "window_cap"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise bad(key, "must be a positive integer")
        if self.dim % self.heads or (self.dim // self.heads) % 2:
            raise bad("heads", "dim / heads must be an even integer")
        if self.arch == "llama" and self.heads % self.kv_heads:
            raise bad("kv_heads", "must divide heads")
        if not 0.0 <= self.dropout < 1.0:
            raise bad("dropout", "must be in [0, 1)")
        if not self.windows or any(not isinstance(w, int) or w < 1 for w in self.windows):
            raise bad("windows", "must be a non-empty list of positive integers")
        if max(self.windows) > self.window_cap:
            raise bad("window_cap", "must be at least the largest trained window")
        if any(not isinstance(i, int) or not 0 <= i < self.depth for i in self.global_layers):
            raise bad("global_layers", f"each entry must be a block index in [0, {self.depth})")
        if not 0 <= self.pad_id < self.vocab_size:
            raise bad("pad_id", "must be a token id below vocab_size")
        if self.arch == "vqvae" and self.samples_per_beat % math.prod(self.codec_strides):
            raise bad("codec_strides", "their product must divide samples_per_beat")

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads
