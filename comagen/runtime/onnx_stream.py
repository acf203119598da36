"""Decoding on ONNX Runtime: the exported one-token step (runtime/step*.onnx) on the CPU.

The prompt is prefilled by the torch model (one batched pass, as on the torch runtime); its
`DecodeState` is then handed over as per-scale rings (`ring_state`, see ring.py), and every further
token is one `InferenceSession.run` of the pure step, which reads the rings in place. Sessions are
built once per file and thread count and shared: ONNX Runtime allows concurrent `run` calls, so the
app's jobs can share one.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from comagen.model import Decoder
from comagen.model.conformer import Conformer
from comagen.runtime.ring import ring_slots
from comagen.runtime.step import input_names, rebase_keys, ring_state, uses_offset

THREADS_ENV = "COMAGEN_ONNX_THREADS"
DEFAULT_THREADS = 1  # measured on 2 shared cores: a second intra-op thread did not pay (see bench/decode.py)

_sessions: dict[tuple[str, int, int, int], object] = {}
_sessions_lock = threading.Lock()
MAX_SESSIONS = 8


def default_threads() -> int:
    """Intra-op threads: $COMAGEN_ONNX_THREADS when set, else DEFAULT_THREADS."""
    text = os.environ.get(THREADS_ENV, "")
    return max(1, int(text)) if text.isdigit() else DEFAULT_THREADS


def session_options(threads: int):  # noqa: ANN201 - onnxruntime.SessionOptions, imported lazily
    """CPU options for a step that runs between Python work: no spinning threads that would take
    the core the grammar and sampler need between two steps."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


def load_session(path: Path, threads: int):  # noqa: ANN201 - onnxruntime.InferenceSession
    """A shared InferenceSession for `path` (rebuilt when the file changes); errors propagate."""
    import onnxruntime as ort

    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, threads)
    with _sessions_lock:
        session = _sessions.get(key)
    if session is None:
        session = ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])
        with _sessions_lock:
            if len(_sessions) >= MAX_SESSIONS:
                _sessions.pop(next(iter(_sessions)))
            _sessions[key] = session
    return session


class OnnxStream:
    """A batch of streams: torch prefill, then ONNX steps on per-scale rings (see ring.py) that live
    here as numpy arrays; each step writes only the new token's key and value into them."""

    def __init__(self, model: Conformer, session, composers: Tensor) -> None:  # noqa: ANN001
        self.model, self.session, self.composers = model, session, composers
        self.inputs = input_names(model)
        self.composer_np = composers.cpu().numpy().astype(np.int64)
        self.slots = [ring_slots(w) for w in model.cfg.windows]
        self.wmax = max(model.cfg.windows)
        self.rotated = uses_offset(model)  # xpos: keys stored turned, an `offset` input, re-basing
        self.state: list[np.ndarray] = []
        self.seen = self.offset = 0

    def prefill(self, tokens: Tensor) -> Tensor:
        state = self.model.new_state(len(self.composers), self.composers.device)
        logits, state = self.model.prefill(tokens, self.composers, state)
        rings, origin = ring_state(self.model, state)
        self.state = [t.numpy() for t in rings]
        self.seen, self.offset = state.pos, state.pos - origin
        return logits

    def step(self, token: Tensor) -> Tensor:
        scalars = [token.numpy().astype(np.int64), self.composer_np, np.array(self.seen, dtype=np.int64)]
        if self.rotated:
            scalars.append(np.array(self.offset, dtype=np.int64))
        out = self.session.run(None, dict(zip(self.inputs, [*scalars, *self.state], strict=True)))
        self._write(out[1:])
        self.seen, self.offset = self.seen + 1, self.offset + 1
        if self.rotated and self.offset >= 2 * self.wmax:
            rebase_keys(self.model, self.state, self.wmax)
            self.offset -= self.wmax
        return torch.from_numpy(out[0])

    def snapshot(self) -> tuple[list[np.ndarray], int, int]:
        return [a.copy() for a in self.state], self.seen, self.offset

    def restore(self, snapshot: tuple[list[np.ndarray], int, int]) -> None:
        self.state, self.seen, self.offset = snapshot

    def _write(self, updates: list[np.ndarray]) -> None:
        """The new token's key and value into each scale's slot; the conv state replaced whole."""
        heads, scales = self.model.cfg.heads, len(self.slots)
        per = 2 * scales + 1
        for i in range(self.model.cfg.depth):
            layer = self.state[per * i:per * (i + 1)]
            for s, k in enumerate(self.slots):
                slot, part = self.seen % k, slice(s * heads, (s + 1) * heads)
                layer[s][:, :, slot] = updates[3 * i][:, part, 0]
                layer[scales + s][:, :, slot] = updates[3 * i + 1][:, part, 0]
            self.state[per * (i + 1) - 1] = updates[3 * i + 2]


class OnnxRuntime:
    """The exported step of one precision ("fp32" or "int8") of a bundle."""

    def __init__(self, model: Decoder, path: Path, precision: str, threads: int, note: str | None = None) -> None:
        self.model, self.precision, self.threads, self.note = model, precision, threads, note
        self.name = f"onnx-{precision}"
        self.session = load_session(path, threads)

    def open(self, composers: Tensor) -> OnnxStream:
        return OnnxStream(self.model, self.session, composers)
