"""What the generation engine asks of a runtime: open a batch of streams, prefill, step.

The engine (generate.Session) keeps grammar masking and sampling; a runtime only turns tokens into
logits. Both sides of a stream are numpy (token ids in, float32 logits out): the engine samples in
numpy, and the ONNX runtime then hands over its bound buffers with no torch call between two steps.
`TorchRuntime` is the reference: the model's own `new_state` / `prefill` / `step`.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from comagen.model import Decoder
from comagen.model.state import DecodeState


class Stream(Protocol):
    """A batch of decode streams with fixed composer rows."""

    def prefill(self, tokens: np.ndarray) -> np.ndarray:
        """Consume a prompt [B, L] (int64); float32 logits [B, V] for its last position."""
        ...

    def step(self, token: np.ndarray) -> np.ndarray:
        """One token per row [B] (int64) in, float32 logits [B, V] out."""
        ...

    def snapshot(self) -> object:
        """A copy of where the streams stand, for `restore` (a duet samples an answer ahead and may
        take it back)."""
        ...

    def restore(self, snapshot: object) -> None:
        """Go back to a `snapshot` (each snapshot is restored at most once)."""
        ...


class Runtime(Protocol):
    """How logits are computed; `name` is reported in the generation stats, `note` says why a
    fallback happened (None when the asked-for runtime is the one running)."""

    name: str
    note: str | None

    def open(self, composers: Tensor) -> Stream:
        """Streams for one row per composer id in `composers` [B]."""
        ...


def id_tensor(ids: np.ndarray, device: torch.device) -> Tensor:
    """A stream's numpy ids as the int64 tensor the torch model reads."""
    return torch.from_numpy(np.asarray(ids, dtype=np.int64)).to(device)


def logit_rows(logits: Tensor) -> np.ndarray:
    """The torch model's logits as the float32 numpy rows a stream returns."""
    return logits.float().cpu().numpy()


class TorchStream:
    def __init__(self, model: Decoder, composers: Tensor, windows: list[int] | None) -> None:
        self.model, self.composers = model, composers
        self.state = model.new_state(len(composers), composers.device, windows=windows)

    def prefill(self, tokens: np.ndarray) -> np.ndarray:
        logits, self.state = self.model.prefill(id_tensor(tokens, self.composers.device), self.composers, self.state)
        return logit_rows(logits)

    def step(self, token: np.ndarray) -> np.ndarray:
        logits, self.state = self.model.step(id_tensor(token, self.composers.device), self.composers, self.state)
        return logit_rows(logits)

    def snapshot(self) -> DecodeState:
        return self.state.clone()

    def restore(self, snapshot: DecodeState) -> None:
        self.state = snapshot


class TorchRuntime:
    """The PyTorch model itself (any architecture, any device, any window override)."""

    name = "torch"

    def __init__(self, model: Decoder, windows: list[int] | None = None, note: str | None = None) -> None:
        self.model, self.windows, self.note = model, windows, note

    def open(self, composers: Tensor) -> TorchStream:
        return TorchStream(self.model, composers, self.windows)
