"""The shell every architecture shares: embeddings, conditioning, head, and the streaming API.

Subclasses provide the body (`_body`) and its per-layer caches (`_new_caches`); the full
forward, `prefill` and `step` are all the same call on a chunk of tokens, with or without a
state, which is why streaming matches the full forward.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from comagen.errors import ConfigError
from comagen.model.capture import AttentionCapture
from comagen.model.config import ModelConfig
from comagen.model.state import DecodeState

PREFILL_CHUNK = 2048  # prompt tokens per prefill pass


class Decoder(nn.Module):
    """Token + composer embeddings -> body -> final norm -> vocabulary logits."""

    def __init__(self, cfg: ModelConfig, final_norm: nn.Module | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.token_emb = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.composer_emb = nn.Embedding(cfg.n_composers, cfg.dim)
        self.emb_dropout = nn.Dropout(cfg.dropout)
        self.norm = final_norm if final_norm is not None else nn.LayerNorm(cfg.dim)
        self.head = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)

    def init_weights(self) -> None:
        """nanoGPT-style init (normal 0.02, zero biases); call once the body exists."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
                if isinstance(module, nn.Linear) and module.bias is not None:
                    nn.init.zeros_(module.bias)
        if self.cfg.tie_embeddings:
            self.head.weight = self.token_emb.weight

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # --- hooks for subclasses -------------------------------------------------------------
    def _body(self, x: Tensor, start: int, windows: list[int] | None, caches: Any,
              capture_last: int) -> tuple[Tensor, AttentionCapture | None]:
        raise NotImplementedError

    def _new_caches(self, batch: int, device: torch.device, windows: list[int] | None) -> Any:
        raise NotImplementedError

    def _embed_positions(self, start: int, length: int) -> Tensor | None:
        return None

    def reach(self, windows: list[int] | None) -> int | None:
        """How many of a prompt's last tokens a fresh stream's state can depend on (None: all of them)."""
        return None

    def check_windows(self, windows: list[int] | None) -> list[int] | None:
        """The windows a request asks for, as the model will run them (None: as trained); else one line why not."""
        if windows is not None:
            raise ConfigError(f"a window override is only for the conformer, not {self.cfg.arch}")
        return None

    # --- the public API -----------------------------------------------------------------------
    def _run(self, tokens: Tensor, composer: Tensor, start: int, windows: list[int] | None, caches: Any,
             capture_last: int) -> tuple[Tensor, AttentionCapture | None]:
        x = self.token_emb(tokens) + self.composer_emb(composer)[:, None]
        pos = self._embed_positions(start, tokens.shape[1])
        if pos is not None:
            x = x + pos
        x, capture = self._body(self.emb_dropout(x), start, windows, caches, capture_last)
        return self.head(self.norm(x)), capture

    def forward(self, tokens: Tensor, composer: Tensor, windows: list[int] | None = None,
                capture_last: int = 0) -> Tensor | tuple[Tensor, AttentionCapture]:
        """Logits [B, L, V] for every position; with `capture_last=K` also an AttentionCapture."""
        logits, capture = self._run(tokens, composer, 0, self.check_windows(windows), None, capture_last)
        return (logits, capture) if capture_last else logits

    def _advance(self, tokens: Tensor, composer: Tensor, state: DecodeState,
                 capture_last: int) -> tuple[Tensor, AttentionCapture | None]:
        out = self._run(tokens, composer, state.pos, state.windows, state.caches, capture_last)
        state.pos += tokens.shape[1]
        return out

    @torch.inference_mode()
    def new_state(self, batch_size: int, device: torch.device | str | None = None,
                  windows: list[int] | None = None) -> DecodeState:
        device = torch.device(device) if device is not None else self.head.weight.device
        windows = self.check_windows(windows)
        return DecodeState(0, windows, self._new_caches(batch_size, device, windows))

    @torch.inference_mode()
    def prefill(self, tokens: Tensor, composer: Tensor, state: DecodeState) -> tuple[Tensor, DecodeState]:
        """Consume a prompt of any length; logits [B, V] for its last position. It goes through in
        PREFILL_CHUNK-token passes, so a long prompt (a Continue of a 5-minute piece) costs the
        activations of one pass instead of growing with its length. A fresh stream reads only the
        prompt's last `reach` tokens: nothing before them can reach its state or the last logits.

        The state is updated in place and returned; `state.clone()` first to keep the old one.
        """
        reach = self.reach(state.windows) if state.pos == 0 else None
        skipped = max(tokens.shape[1] - reach, 0) if reach else 0
        for start in range(skipped, max(tokens.shape[1], 1), PREFILL_CHUNK):
            logits, _ = self._advance(tokens[:, start:start + PREFILL_CHUNK], composer, state, 0)
        state.pos += skipped  # positions count every token: only their differences enter the maths
        return logits[:, -1], state

    @torch.inference_mode()
    def step(self, token: Tensor, composer: Tensor, state: DecodeState,
             capture: bool = False) -> tuple[Tensor, DecodeState] | tuple[Tensor, DecodeState, AttentionCapture]:
        """One token [B] in, logits [B, V] out; with `capture=True` also the attention (K = 1)."""
        logits, cap = self._advance(token[:, None], composer, state, int(capture))
        return (logits[:, -1], state, cap) if capture else (logits[:, -1], state)
