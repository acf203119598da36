"""The piano-roll transformer: frames of 128 keys in, an independent probability per key out.

It reads no tokens: each time step is a frame of which keys sound (`comagen.music.frames`); a
linear projection lifts it to the model width, fixed sinusoidal positions plus dropout give order,
pre-norm causal transformer blocks (the gpt2 baseline's: layer norm, residuals, GELU, dropout) read
the past, and a linear head gives 128 logits, one Bernoulli per key (binary cross-entropy), so a
chord is as easy to say as a single note.

Its sequence memory is `max_seq_len` frames (1,024 by default: 64 s at 16 frames a second).
Streaming keeps a KV cache that grows up to that memory; the frame that would overflow it slides
the window: the cache is dropped and the last `max_seq_len / 2` frames are read again with their
positions restarted at 0 (absolute positions cannot shift in place). That is one half-window
prefill per half-window of frames, so the cost per frame stays flat however long the stream, and
every logit equals the full forward over the frames since the last slide.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor, nn

from comagen.errors import ConfigError
from comagen.model.baselines import MLP, Block
from comagen.model.config import ModelConfig
from comagen.model.full_attention import FullAttention
from comagen.model.positional import sinusoidal_table
from comagen.model.state import DecodeState, WindowCache

KEYS = 128
INPUT_STD = 0.3


class PianoRoll(nn.Module):
    """Frames [B, L, 128] -> key logits [B, L, 128] for the next frame."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.proj_in = nn.Linear(KEYS, cfg.dim)
        self.register_buffer("positions", sinusoidal_table(cfg.max_seq_len, cfg.dim), persistent=False)
        self.emb_dropout = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(
            Block(FullAttention(cfg.dim, cfg.heads, bias=True, dropout=cfg.dropout),
                  MLP(cfg.dim, cfg.ff_mult * cfg.dim, cfg.dropout)) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.dim)
        self.head = nn.Linear(cfg.dim, KEYS)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        # A frame holds a handful of keys: at std 0.02 its projection would be ~0.05 against
        # positions of ~0.7 and the model barely sees its input (it did not learn); at this std a
        # frame of ~5 keys is as large as the positions.
        nn.init.normal_(self.proj_in.weight, std=INPUT_STD)
        nn.init.constant_(self.head.bias, -4.0)  # most keys are silent; training sets the key log-odds

    @torch.no_grad()
    def set_key_prior(self, frequency: Tensor) -> None:
        """Start the head at each key's log-odds, so the untrained model already scores the
        key-frequency floor and training spends its steps on what the past says."""
        p = frequency.clamp(1e-6, 1 - 1e-6).to(self.head.bias)
        self.head.bias.copy_(torch.log(p) - torch.log1p(-p))

    @property
    def memory(self) -> int:
        return self.cfg.max_seq_len

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _run(self, frames: Tensor, start: int, caches: list[Any] | None) -> Tensor:
        if not torch.jit.is_tracing() and start + frames.shape[1] > self.memory:
            raise ConfigError(f"the pianoroll reads at most {self.memory} frames at once")
        x = self.proj_in(frames) + self.positions[start:start + frames.shape[1]]
        x = self.emb_dropout(x)
        for i, block in enumerate(self.blocks):
            x = block(x, start, None, caches[i] if caches is not None else None)
        return self.head(self.norm(x))

    def forward(self, frames: Tensor) -> Tensor:
        """Logits [B, L, 128] for the frame after each of frames [B, L, 128] (L <= max_seq_len)."""
        return self._run(frames, 0, None)

    @torch.inference_mode()
    def attention(self, frames: Tensor, last: int) -> list[Tensor]:
        """What each layer's heads look at: per layer [heads, last, L], the attention of the last
        `last` of frames [1, L, 128] (L <= the memory) over all L (0 where the future would be)."""
        x = self.proj_in(frames) + self.positions[:frames.shape[1]]
        length, last = frames.shape[1], min(last, frames.shape[1])
        visible = torch.ones(length, length, dtype=torch.bool, device=frames.device).tril()[length - last:]
        maps = []
        for block in self.blocks:
            attn = block.attn
            q, k, _ = attn.to_qkv(attn.norm(x)).chunk(3, dim=-1)
            q, k = (t.view(1, length, attn.heads, attn.head_dim).transpose(1, 2)[0] for t in (q, k))
            scores = q[:, length - last:] @ k.transpose(-1, -2) / attn.head_dim ** 0.5
            maps.append(scores.masked_fill(~visible, float("-inf")).softmax(-1))
            x = block(x, 0, None, None)
        return maps

    # --- streaming -----------------------------------------------------------------------------
    @torch.inference_mode()
    def new_state(self, batch_size: int, device: torch.device | str | None = None) -> DecodeState:
        device = torch.device(device) if device is not None else self.head.weight.device
        dtype = self.head.weight.dtype
        history = WindowCache.zeros(batch_size, 1, self.memory // 2, KEYS, device, dtype)
        return DecodeState(0, None, {"layers": self._layer_caches(batch_size, device), "history": history})

    def _layer_caches(self, batch: int, device: torch.device) -> list[Any]:
        return [b.attn.new_cache(batch, device, self.head.weight.dtype) for b in self.blocks]

    def _advance(self, frames: Tensor, state: DecodeState) -> Tensor:
        seen = state.caches["history"].extend(frames[:, None])[:, 0]
        if state.pos + frames.shape[1] > self.memory:  # slide: re-read the last half memory from position 0
            frames = seen[:, -min(self.memory // 2, state.pos + frames.shape[1]):]
            state.caches["layers"], state.pos = self._layer_caches(frames.shape[0], frames.device), 0
        logits = self._run(frames, state.pos, state.caches["layers"])
        state.pos += frames.shape[1]
        return logits[:, -1]

    @torch.inference_mode()
    def prefill(self, frames: Tensor, state: DecodeState) -> tuple[Tensor, DecodeState]:
        """Read a prompt [B, L, 128] of any length (past the memory only its last half memory
        counts); logits [B, 128] for the next frame. The state is updated in place."""
        return self._advance(frames.to(self.head.weight.dtype), state), state

    @torch.inference_mode()
    def step(self, frame: Tensor, state: DecodeState) -> tuple[Tensor, DecodeState]:
        """One frame [B, 128] in, logits [B, 128] for the next out."""
        return self._advance(frame[:, None].to(self.head.weight.dtype), state), state


def trace(model: PianoRoll, frames: int = 64) -> torch.jit.ScriptModule:
    """The full forward as TorchScript (frames [B, L, 128] -> logits), for deployment without this
    code: traced in eval mode on `frames` silent frames, valid for any L up to the memory."""
    model = model.eval()
    example = torch.zeros(1, min(frames, model.memory), KEYS, device=model.head.weight.device)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # the branches it names are constant here
        return torch.jit.trace(model, example, check_trace=False)
