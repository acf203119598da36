"""The CoMA conformer and its baselines behind one interface: build_model(ModelConfig)."""

from __future__ import annotations

from comagen.model.baselines import GPT2, Llama, MusicTransformer
from comagen.model.capture import AttentionCapture
from comagen.model.config import ModelConfig
from comagen.model.conformer import Conformer
from comagen.model.decoder import Decoder
from comagen.model.peer import XTransformersPeer
from comagen.model.pianoroll import PianoRoll
from comagen.model.state import DecodeState
from comagen.model.vqvae import VQVAE

ARCHITECTURES: dict[str, type[Decoder] | type[PianoRoll]] = {
    "conformer": Conformer,
    "gpt2": GPT2,
    "music_transformer": MusicTransformer,
    "llama": Llama,
    "xtransformers": XTransformersPeer,
    "pianoroll": PianoRoll,  # frames, not tokens: its own forward / prefill / step over [B, L, 128]
    "vqvae": VQVAE,  # beat-aligned audio <-> codes (the melformer's vocabulary)
}


def build_model(cfg: ModelConfig) -> Decoder | PianoRoll | VQVAE:
    """A freshly initialised fp32 model for `cfg.arch`."""
    cfg.validate()
    return ARCHITECTURES[cfg.arch](cfg)


__all__ = ["AttentionCapture", "DecodeState", "Decoder", "ModelConfig", "PianoRoll", "VQVAE", "build_model"]
