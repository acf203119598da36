"""Decoding on ONNX Runtime: the exported one-token step (runtime/step*.onnx) on the CPU.

The prompt is prefilled by the torch model (one batched pass, as on the torch runtime); its
`DecodeState` is then handed over as per-scale rings (`ring_state`, see ring.py), and every further
token is one `run_with_iobinding` of the pure step on buffers bound once (each stream its own
binding), which reads the rings in place. Sessions are built once per file and thread count and
shared: ONNX Runtime allows concurrent runs, so the app's jobs can share one.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
from torch import Tensor

from comagen import native
from comagen.model import Decoder
from comagen.model.conformer import Conformer
from comagen.runtime.ring import ring_slots
from comagen.runtime.step import input_names, rebase_keys, ring_state, uses_offset
from comagen.runtime.stream import id_tensor, logit_rows

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
    """A batch of streams: torch prefill, then ONNX steps on per-scale rings (see ring.py).

    Every state tensor lives in one flat numpy buffer, bound once (with IOBinding) as the step's
    inputs; the scalars and the outputs are bound numpy buffers too. A step therefore writes three
    scalars, runs, scatters the new keys and values into their ring slots in one indexed copy and
    copies the conv states in one slice: no feed dict, no output allocation, no per-layer Python (on
    `default` these were a tenth of a token's time)."""

    def __init__(self, model: Conformer, session, composers: Tensor, windows: list[int]) -> None:  # noqa: ANN001
        self.model, self.session, self.composers, self.windows = model, session, composers, windows
        self.inputs = input_names(model)
        self.composer_np = composers.cpu().numpy().astype(np.int64)
        self.slots = [ring_slots(w) for w in windows]
        self.wmax = max(windows)
        self.rotated = uses_offset(model)  # xpos: keys stored turned, an `offset` input, re-basing
        self.state: list[np.ndarray] = []
        self.seen = self.offset = 0

    def prefill(self, tokens: np.ndarray) -> np.ndarray:
        state = self.model.new_state(len(self.composers), self.composers.device, windows=self.windows)
        logits, state = self.model.prefill(id_tensor(tokens, self.composers.device), self.composers, state)
        rings, origin = ring_state(self.model, state)
        self._bind([t.numpy() for t in rings])
        self.seen, self.offset = state.pos, state.pos - origin
        return logit_rows(logits)

    def step(self, token: np.ndarray) -> np.ndarray:
        self.token[:] = token
        self.scalars[0], self.scalars[1] = self.seen, self.offset
        self.session.run_with_iobinding(self.binding)
        if self.write is not None:  # compiled: the same writes in one call
            native.LIB.ring_write(*self.write, self.seen, *self.write_convs)
        else:
            np.remainder(self.seen, self.period, out=self.where)  # each row's slot, then its place in the buffer
            self.where += self.to
            self.ring_rows[self.where] = self.new_rows if self.src is None else self.new_rows[self.src]
            self.convs[:] = self.new_convs
        self.seen, self.offset = self.seen + 1, self.offset + 1
        if self.rotated and self.offset >= 2 * self.wmax:
            rebase_keys(self.model, self.state, self.wmax)
            self.offset -= self.wmax
        return self.logits.copy()

    def snapshot(self) -> tuple[np.ndarray, int, int]:
        return self.buffer.copy(), self.seen, self.offset

    def restore(self, snapshot: tuple[np.ndarray, int, int]) -> None:
        np.copyto(self.buffer, snapshot[0])
        self.seen, self.offset = snapshot[1], snapshot[2]

    def _bind(self, state: list[np.ndarray]) -> None:
        """The state into one buffer (every ring, then every conv state), each input and output bound
        to numpy memory, and the row indices of the per-step write (see `_rows`)."""
        from onnxruntime import OrtValue

        depth, per = self.model.cfg.depth, 2 * len(self.slots) + 1
        conv = [per * (i + 1) - 1 for i in range(depth)]
        order = [i for i in range(len(state)) if i not in conv] + conv
        self.buffer = np.concatenate([state[i].ravel() for i in order], dtype=np.float32)
        views = _views(self.buffer, [state[i].shape for i in order])
        self.state = [views[order.index(i)] for i in range(len(state))]
        dim, rings = state[0].shape[-1], sum(state[i].size for i in order[:-depth])
        self.ring_rows, self.convs = self.buffer[:rings].reshape(-1, dim), self.buffer[rings:]

        batch = len(self.composer_np)
        kv = (batch, len(self.slots) * state[0].shape[1], 1, dim)  # the new token's key or value, all scales
        shapes = [kv] * 2 * depth + [state[i].shape for i in conv] + [(batch, self.model.cfg.vocab_size)]
        out = np.zeros(sum(int(np.prod(s)) for s in shapes), dtype=np.float32)
        outputs = _views(out, shapes)
        news = 2 * depth * int(np.prod(kv))
        self.new_rows, self.new_convs = out[:news].reshape(-1, dim), out[news:news + self.convs.size]
        self.logits = outputs[-1]
        updates = [a for i in range(depth) for a in (outputs[2 * i], outputs[2 * i + 1], outputs[2 * depth + i])]

        self.token = np.zeros(batch, dtype=np.int64)
        self.scalars = np.zeros(2, dtype=np.int64)  # seen, offset, bound as 0-d views
        scalars = [self.token, self.composer_np, self.scalars[0:1].reshape(()), self.scalars[1:2].reshape(())]
        self.binding = self.session.io_binding()
        for name, array in zip(self.inputs, [*scalars[:len(self.inputs) - len(state)], *self.state], strict=True):
            self.binding.bind_ortvalue_input(name, OrtValue.ortvalue_from_numpy(array))
        for output, array in zip(self.session.get_outputs(), [self.logits, *updates], strict=True):
            self.binding.bind_ortvalue_output(output.name, OrtValue.ortvalue_from_numpy(array))
        src, self.to, self.period = self._rows(state, kv)
        self.src = None if np.array_equal(src, np.arange(len(src))) else src  # batch 1: already in ring order
        self.where = np.empty_like(self.to)
        self.write = None if native.LIB is None else (  # `ring_write`'s arguments before `seen`, and after it
            self.ring_rows.ctypes.data, self.new_rows.ctypes.data, 0 if self.src is None else self.src.ctypes.data,
            self.to.ctypes.data, self.period.ctypes.data, len(self.to), dim)
        self.write_convs = (self.convs.ctypes.data, self.new_convs.ctypes.data, self.convs.size)

    def _rows(self, state: list[np.ndarray], kv: tuple[int, ...]) -> tuple[np.ndarray, ...]:
        """Row indices (a row: one head's key or value, head_dim floats) such that
        `ring_rows[to + seen % period] = new_rows[src]` writes the new token's key and value into slot
        `seen mod (W_s-1)` of each scale's ring."""
        per, scales, heads = 2 * len(self.slots) + 1, len(self.slots), state[0].shape[1]
        new = np.arange(2 * self.model.cfg.depth * int(np.prod(kv[:-1]))).reshape(-1, *kv[:-1])
        src, to, period, start = [], [], [], 0
        for i in range(self.model.cfg.depth):
            for kind in (0, 1):  # keys, values
                for s, k in enumerate(self.slots):
                    ring = state[per * i + kind * scales + s].shape[:-1]  # [B, heads, k]
                    src.append(new[2 * i + kind][:, s * heads:(s + 1) * heads, 0].ravel())
                    to.append((np.arange(int(np.prod(ring))).reshape(ring)[:, :, 0] + start).ravel())
                    period.append(np.full(src[-1].size, k))
                    start += int(np.prod(ring))
        return tuple(np.concatenate(parts).astype(np.int64) for parts in (src, to, period))


def _views(buffer: np.ndarray, shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    """Consecutive C-contiguous views of `buffer` with these shapes."""
    ends = np.cumsum([0, *(int(np.prod(s)) for s in shapes)])
    return [buffer[a:b].reshape(s) for a, b, s in zip(ends[:-1], ends[1:], shapes, strict=True)]


class OnnxRuntime:
    """The exported step of one precision ("fp32" or "int8") of a bundle, at the trained windows or any
    narrower ones (each ring's size is an axis of the exported graph)."""

    def __init__(self, model: Decoder, path: Path, precision: str, threads: int, note: str | None = None,
                 windows: list[int] | None = None) -> None:
        self.model, self.precision, self.threads, self.note = model, precision, threads, note
        self.windows = list(windows or model.cfg.windows)
        self.name = f"onnx-{precision}"
        self.session = load_session(path, threads)

    def open(self, composers: Tensor) -> OnnxStream:
        return OnnxStream(self.model, self.session, composers, self.windows)
