"""The conformer's one-token step as a pure function of explicit, fixed-shape state tensors.

`StepFunction(model)(token, composer, seen[, offset], *state) -> (logits, *updates)` runs the
model's own blocks (feed-forward, conv, hyper-connections, the attention projections and scale
mix); attention reads per-scale rings (see ring.py) instead of the torch `WindowCache`. That is
what an exporter can trace into a graph with no Python state, and what ONNX Runtime can run.

State per block, in order (batch first, time on dim 2):
    keys   [B, heads, W_s-1, head_dim] per scale s   that scale's ring of past keys (stored form)
    values [B, heads, W_s-1, head_dim] per scale s
    conv   [B, kernel-1, (1,) dim]                   the conv's last kernel-1 inputs, as rows (`conv_rows`)
Updates per block: the new token's key and value [B, S*heads, 1, head_dim] (the caller writes each
scale's part into slot `seen mod (W_s-1)`) and the conv's next state. `seen` (int64 scalar) is the
number of tokens already consumed; `offset` (xpos models only) is `seen` minus the rings' origin.
"""

from __future__ import annotations

import copy
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor, nn

from comagen.errors import ConfigError
from comagen.model.config import ModelConfig
from comagen.model.conformer import Conformer
from comagen.model.hyper import expand_streams, reduce_streams
from comagen.model.positional import apply_rotary, rotary_tables
from comagen.model.state import DecodeState
from comagen.runtime.ring import RingLayer, offset_tables, rebase_factor, ring_context, ring_slots


def check_exportable(model: nn.Module) -> Conformer:
    """The model if its step has a fixed-size state, else a one-line reason."""
    if not isinstance(model, Conformer):
        raise ConfigError(f"only the conformer has a fixed-size decode state to export, not {model.cfg.arch}")
    if model.cfg.global_layers:
        raise ConfigError(f"global_layers {model.cfg.global_layers} keep a growing KV cache, which a fixed-shape "
                          "ONNX step cannot hold; this checkpoint runs on the torch runtime")
    if min(model.cfg.windows) < 2 or model.cfg.conv_kernel < 2:
        raise ConfigError("windows of 1 and a conv kernel of 1 keep no state: nothing to stream")
    return model


def uses_offset(model: Conformer) -> bool:
    """xpos models store rotated keys and take the rings' `offset` as an input; dpb models do not."""
    return model.dpb is None


class TensorWindow:
    """A `WindowCache` stand-in for one call over a conv's past kept as rows [B, kernel-1, (1,) dim]: the
    past is a tensor, the new tail an output (`rows` tells the conv module which layout it gets)."""

    rows = True

    def __init__(self, past: Tensor) -> None:
        self.past = past
        self.tail: Tensor | None = None

    def extend(self, new: Tensor) -> Tensor:
        out = torch.cat((self.past, new), dim=1)
        self.tail = out[:, new.shape[1]:]
        return out


def input_names(model: Conformer) -> list[str]:
    """The step's inputs, in order: token, composer, seen, [offset], then the state."""
    scalars = ["token", "composer", "seen", *(["offset"] if uses_offset(model) else [])]
    return scalars + state_names(model)


def state_names(model: Conformer) -> list[str]:
    scales = range(len(model.cfg.windows))
    return [name for i in range(model.cfg.depth)
            for name in (*[f"keys{i}_{s}" for s in scales], *[f"values{i}_{s}" for s in scales], f"conv{i}")]


def update_names(model: Conformer) -> list[str]:
    return [f"{kind}{i}_next" for i in range(model.cfg.depth) for kind in ("keys", "values", "conv")]


def conv_rows(cfg: ModelConfig, batch: int) -> tuple[int, ...]:
    """A conv state's shape: its last kernel-1 inputs as rows, with the hyper-connections' stream axis
    (of size 1: the streams are summed) where the model has several, as the conv branch then takes it."""
    return (batch, cfg.conv_kernel - 1, *([1] if cfg.hyper_streams > 1 else []), cfg.dim)


def state_shapes(model: Conformer, batch: int, windows: list[int] | None = None) -> list[tuple[int, ...]]:
    """Shapes of the state tensors at `windows` (None: the trained ones), in `state_names` order."""
    cfg = model.cfg
    rings = [(batch, cfg.heads, ring_slots(w), cfg.head_dim) for w in windows or cfg.windows]
    return [*rings, *rings, conv_rows(cfg, batch)] * cfg.depth


def ring_state(model: Conformer, state: DecodeState) -> tuple[list[Tensor], int]:
    """A torch `DecodeState` as the step's state tensors (new memory) and the rings' origin.

    Each scale's last W-1 keys (W: the windows the state runs at) go to slot p mod (W-1); with xpos
    they are rotated to p - origin, with origin = pos - max(W), so the first step's `offset` is max(W).
    """
    cfg, pos, windows = model.cfg, state.pos, state.windows or model.cfg.windows
    wmax = max(windows)
    turn = rotary_tables(torch.arange(wmax), cfg.head_dim, xpos=True)[1] if uses_offset(model) else None
    out = []
    for layer in state.caches:
        rings: list[list[Tensor]] = [[], []]
        for kind, cache in enumerate(layer["attn"]):
            window = cache.buf[:, :, cache.end - cache.keep:cache.end].float().cpu()  # positions pos-keep .. pos-1
            for s, k in enumerate(ring_slots(w) for w in windows):
                part = window[:, s * cfg.heads:(s + 1) * cfg.heads, window.shape[2] - k:]
                if kind == 0 and turn is not None:
                    part = apply_rotary(part, turn[wmax - k:])
                rings[kind].append(part.roll(pos % k, dims=2).contiguous())  # position p -> slot p mod k
        conv = layer["conv"]
        rows = conv.buf[:, :, conv.end - conv.keep:conv.end].permute(0, 2, 3, 1)  # [B, kernel-1, 1, dim]
        out += [*rings[0], *rings[1], rows.reshape(conv_rows(cfg, rows.shape[0])).float().cpu().contiguous()]
    return out, pos - wmax


class StepFunction(nn.Module):
    """Pure one-token step of a conformer at its trained windows (see the module docstring)."""

    def __init__(self, model: Conformer) -> None:
        super().__init__()
        self.model = model = check_exportable(copy.deepcopy(model).float().cpu().eval())
        for block in model.blocks:  # exact folds that leave fewer nodes to an exported graph
            for ff in (block.ff1.branch, block.ff2.branch):
                ff.fold_half()
        cfg = model.cfg
        self.scales = len(cfg.windows)
        device = model.head.weight.device
        with torch.no_grad():  # built once, here, so a trace sees constants rather than their recipe
            self.tables = offset_tables(max(cfg.windows), cfg.head_dim, device) if uses_offset(model) else None

    def forward(self, token: Tensor, composer: Tensor, seen: Tensor, *rest: Tensor) -> tuple[Tensor, ...]:
        model, cfg = self.model, self.model.cfg
        offset, state = (rest[0], rest[1:]) if self.tables is not None else (None, rest)
        slots = [ring.shape[2] for ring in state[:self.scales]]  # the windows this stream runs at, less one
        ctx = ring_context(slots, cfg.heads, model.dpb, seen, offset, self.tables)
        x = model.token_emb(token[:, None]) + model.composer_emb(composer)[:, None]
        h = expand_streams(x, cfg.hyper_streams)
        per = 2 * self.scales + 1
        updates = []
        for i, block in enumerate(model.blocks):
            layer = state[per * i:per * (i + 1)]
            ring = RingLayer(ctx, list(layer[:self.scales]), list(layer[self.scales:2 * self.scales]))
            conv = TensorWindow(layer[-1])
            h, _ = block(h, ctx, 0, None, {"attn": ring, "conv": conv}, False)
            updates += [ring.new_k, ring.new_v, conv.tail]
        x = reduce_streams(h, cfg.hyper_streams)
        return (model.head(model.norm(x))[:, -1], *updates)


def rebase_keys(model: Conformer, state: list, shift: int) -> None:
    """Move the rings' origin `shift` positions later: every stored key (numpy, in place) is turned
    back by `shift` (xpos models only; see ring.py)."""
    factor = rebase_turn(shift, model.cfg.head_dim)
    per, scales = 2 * len(model.cfg.windows) + 1, len(model.cfg.windows)
    for i in range(model.cfg.depth):
        for ring in state[per * i:per * i + scales]:
            z = ring.view(np.complex64)
            z *= factor


@lru_cache(maxsize=8)
def rebase_turn(shift: int, head_dim: int) -> np.ndarray:
    """`rebase_factor` as numpy [d/2] complex64, made once: a stream re-bases by the same shift every
    max(W) tokens, and building the table took most of a re-base's time."""
    return rebase_factor(shift, head_dim)[0].numpy()
