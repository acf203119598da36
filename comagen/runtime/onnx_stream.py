"""Decoding on ONNX Runtime: the exported one-token step (runtime/step*.onnx) on the CPU.

The prompt is prefilled by the torch model (one batched pass, as on the torch runtime); its
`DecodeState` is then handed over as the exact same numbers (`state_tensors`), and every further
token is one `InferenceSession.run` of the pure step. Sessions are built once per file and thread
count and shared: ONNX Runtime allows concurrent `run` calls, so the app's jobs can share one.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from comagen.model import Decoder
from comagen.runtime.step import state_names, state_tensors

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
    """A batch of streams: torch prefill, then ONNX steps on explicit state arrays."""

    def __init__(self, model: Decoder, session, composers: Tensor) -> None:  # noqa: ANN001
        self.model, self.session, self.composers = model, session, composers
        self.names = state_names(model.cfg.depth)
        self.composer_np = composers.cpu().numpy().astype(np.int64)
        self.state: list[np.ndarray] = []
        self.seen = 0

    def prefill(self, tokens: Tensor) -> Tensor:
        state = self.model.new_state(len(self.composers), self.composers.device)
        logits, state = self.model.prefill(tokens, self.composers, state)
        self.state = [np.ascontiguousarray(t.numpy()) for t in state_tensors(state)]
        self.seen = state.pos
        return logits

    def step(self, token: Tensor) -> Tensor:
        feeds = {"token": token.numpy().astype(np.int64), "composer": self.composer_np,
                 "seen": np.array(self.seen, dtype=np.int64), **dict(zip(self.names, self.state, strict=True))}
        out = self.session.run(None, feeds)
        self.state = out[1:]
        self.seen += 1
        return torch.from_numpy(out[0])


class OnnxRuntime:
    """The exported step of one precision ("fp32" or "int8") of a bundle."""

    def __init__(self, model: Decoder, path: Path, precision: str, threads: int, note: str | None = None) -> None:
        self.model, self.precision, self.threads, self.note = model, precision, threads, note
        self.name = f"onnx-{precision}"
        self.session = load_session(path, threads)

    def open(self, composers: Tensor) -> OnnxStream:
        return OnnxStream(self.model, self.session, composers)
