"""An outside reference: lucidrains' x-transformers `Decoder` behind our model interface.

Trained by our own loop on our tokens (same crops, same order, same budget) so the comparison
measures the designs, not the pipelines. x-transformers is a development dependency only
(requirements-dev.txt), imported when such a model is built; it is for training and evaluation,
with no streaming state.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from comagen.errors import ConfigError
from comagen.model.capture import AttentionCapture
from comagen.model.config import ModelConfig
from comagen.model.decoder import Decoder


class XTransformersPeer(Decoder):
    """x-transformers' causal attention stack with its recommended options (rotary positions,
    GLU feed-forward); our embeddings, composer conditioning, final norm and tied head around it."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        try:
            from x_transformers import Decoder as XDecoder
        except ImportError:
            raise ConfigError("arch 'xtransformers' needs the x-transformers package "
                              "(pip install -r requirements-dev.txt)") from None
        self.layers = XDecoder(dim=cfg.dim, depth=cfg.depth, heads=cfg.heads, rotary_pos_emb=True, ff_glu=True,
                               ff_mult=cfg.ff_mult, attn_dropout=cfg.dropout, ff_dropout=cfg.dropout)
        self.init_weights()

    def _body(self, x: Tensor, start: int, windows: list[int] | None, caches: Any,
              capture_last: int) -> tuple[Tensor, AttentionCapture | None]:
        if caches is not None or capture_last:
            raise ConfigError("the x-transformers peer is for training and evaluation only (no streaming)")
        return self.layers(x), None

    def _new_caches(self, batch: int, device: Any, windows: list[int] | None) -> Any:
        raise ConfigError("the x-transformers peer is for training and evaluation only (no streaming)")
