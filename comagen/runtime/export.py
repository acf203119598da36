"""`python -m comagen export`: the conformer's one-token step as ONNX files inside its bundle.

    BUNDLE/runtime/step.onnx        fp32 step (whatever the bundle's weight dtype: bf16 is widened)
    BUNDLE/runtime/step.int8.onnx   with --int8: MatMul/Gemm weights quantised to int8
    BUNDLE/runtime/export.json      windows, opset, dtype, hashes (see manifest.py), step timings

The dynamo exporter traces `StepFunction` with a dynamic batch axis (classifier-free guidance runs
conditional and unconditional rows together; variations add rows). Every file is checked against
the torch step before it is recorded, and written whole or not at all.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from comagen.bundle.checkpoint import Bundle
from comagen.errors import CheckpointError, ComagenError
from comagen.model.conformer import Conformer
from comagen.runtime.manifest import MANIFEST, RUNTIME_DIR, WEIGHTS, ExportRecord, file_sha256
from comagen.runtime.onnx_stream import default_threads, session_options
from comagen.runtime.step import (
    StepFunction,
    check_exportable,
    input_names,
    state_names,
    state_shapes,
    update_names,
    uses_offset,
)

OPSET = 18
FILES = {"fp32": "step.onnx", "int8": "step.int8.onnx"}
VERIFY_TOLERANCE = {"fp32": 1e-3, "int8": None}  # int8 is checked for finite, well-shaped logits only


def export_bundle(bundle: Bundle, out: Path | None = None, int8: bool = False, threads: int | None = None,
                  measure_steps: int = 32, int8_only: bool = False) -> dict:
    """Export the bundle's step (and its int8 twin; with `int8_only` that alone, which keeps a shipped
    bundle small) and return what was written and measured."""
    int8 = int8 or int8_only
    model = check_exportable(bundle.model)
    weights = bundle.path / WEIGHTS
    if not weights.is_file():
        raise CheckpointError(f"{bundle.path}: no {WEIGHTS} to export from")
    out = Path(out) if out is not None else bundle.path / RUNTIME_DIR
    threads = threads or default_threads()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ComagenError(f"cannot write {out}: {exc.strerror or exc}") from None
    t0 = time.perf_counter()
    step = StepFunction(copy.deepcopy(model).float().cpu().eval()).eval()
    precisions = ["int8"] if int8_only else ["fp32", "int8"] if int8 else ["fp32"]
    record = ExportRecord(windows=list(model.cfg.windows), opset=OPSET, weights_sha256=file_sha256(weights),
                          threads=threads, versions=_versions())
    with tempfile.TemporaryDirectory(dir=out, prefix=".export.") as tmp:
        staged = {"fp32": Path(tmp) / FILES["fp32"]}
        _export_onnx(step, staged["fp32"])
        if int8:
            staged["int8"] = Path(tmp) / FILES["int8"]
            _quantize(staged["fp32"], staged["int8"])
        for precision, path in staged.items():
            _verify(step, path, precision)
        record.step_ms = measure(step, staged, threads, measure_steps) if measure_steps else {}
        if record.step_ms:
            record.prefer = min(("torch", *precisions), key=record.step_ms.get)
        elif int8_only:
            record.prefer = "int8"
        (out / MANIFEST).unlink(missing_ok=True)  # no moment where an old record names new files
        for precision in precisions:
            path = staged[precision]
            os.replace(path, out / FILES[precision])
            record.files[precision] = {"name": FILES[precision], "sha256": file_sha256(out / FILES[precision])}
    for precision, name in FILES.items():  # an int8 file from an older export is not this export's
        if precision not in precisions:
            (out / name).unlink(missing_ok=True)
    record.save(out)
    return {"out": str(out), "files": [FILES[p] for p in precisions], "windows": record.windows, "opset": OPSET,
            "dtype": record.dtype, "prefer": record.prefer, "step_ms": record.step_ms, "threads": threads,
            "seconds": round(time.perf_counter() - t0, 1)}


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime

    return {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}


def example_inputs(step: StepFunction, batch: int, seen: int = 0, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Token, composer, seen, [offset] and random state for `batch` rows (batch >= 2 keeps the axis
    dynamic); the offset is as far from the origin as a stream ever gets."""
    cfg = step.model.cfg
    gen = torch.Generator().manual_seed(seed)
    token = torch.randint(0, cfg.vocab_size, (batch,), generator=gen)
    composer = torch.randint(0, cfg.n_composers, (batch,), generator=gen)
    state = [torch.randn(shape, generator=gen) for shape in state_shapes(step.model, batch)]
    offset = [torch.tensor(2 * max(cfg.windows) - 1)] if uses_offset(step.model) else []
    return (token, composer, torch.tensor(seen), *offset, *state)


@contextlib.contextmanager
def _quiet():
    """The exporter narrates each stage and warns about optional packages; a CLI run wants one line."""
    loggers = [logging.getLogger(), logging.getLogger("torch.onnx")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _export_onnx(step: StepFunction, path: Path) -> None:
    inputs = input_names(step.model)
    batch = torch.export.Dim("batch", min=1)
    rows = {0: batch}
    states = len(state_names(step.model))
    scalars = len(inputs) - states
    with _quiet(), torch.no_grad():
        torch.onnx.export(step, example_inputs(step, 2), str(path), dynamo=True, opset_version=OPSET,
                          input_names=inputs, output_names=["logits", *update_names(step.model)],
                          dynamic_shapes=(rows, rows, None, (*[None] * (scalars - 3), *[rows] * states)),
                          external_data=False, verbose=False)


def _quantize(src: Path, dst: Path) -> None:
    """Dynamic int8 quantisation of the weight matrices only (activation x activation products,
    the attention scores, stay fp32)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet():  # it logs a pre-processing hint meant for convolutional image models
        quantize_dynamic(src, dst, op_types_to_quantize=["MatMul", "Gemm"], weight_type=QuantType.QInt8,
                         per_channel=True, extra_options={"MatMulConstBOnly": True})


def _verify(step: StepFunction, path: Path, precision: str) -> None:
    """The file runs in ONNX Runtime, with batch 1 and 3, early (window partly empty) and late,
    and (fp32) gives the torch step's numbers."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), session_options(1), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    for batch, seen in ((1, 2), (3, 5000)):
        inputs = example_inputs(step, batch, seen, seed=batch)
        got = session.run(None, {n: t.numpy() for n, t in zip(names, inputs, strict=True)})
        with torch.no_grad():
            want = [t.numpy() for t in step(*inputs)]
        if any(g.shape != w.shape for g, w in zip(got, want, strict=True)) or not np.isfinite(got[0]).all():
            raise ComagenError(f"the exported {precision} step gives malformed outputs; nothing was written")
        tol = VERIFY_TOLERANCE[precision]
        if tol is not None:
            err = max(float(np.abs(g - w).max()) for g, w in zip(got, want, strict=True))
            if err > tol:
                raise ComagenError(f"the exported {precision} step differs from torch by {err:.2g}; "
                                   "nothing was written")


def measure(step: StepFunction, files: dict[str, Path], threads: int, steps: int) -> dict[str, float]:
    """Median batch-1 step time (ms) of the torch step and of each file, with the window full, taking
    turns over 3 rounds so that load from other processes hits all of them alike."""
    import onnxruntime as ort

    model = step.model
    runs = {"torch": _torch_steps(model)}
    for precision, path in files.items():
        session = ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]
        feeds = {n: t.numpy() for n, t in zip(names, example_inputs(step, 1, seen=10_000), strict=True)}
        runs[precision] = functools.partial(session.run, None, feeds)
    times: dict[str, list[float]] = {name: [] for name in runs}
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for _ in range(3):
            for name, run in runs.items():
                for i in range(steps + 2):
                    t0 = time.perf_counter()
                    run()
                    if i >= 2:
                        times[name].append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(torch_threads)
    return {name: round(float(np.median(t)) * 1e3, 3) for name, t in times.items()}


def _torch_steps(model: Conformer) -> Callable[[], None]:
    """One torch step per call on a batch-1 state whose windows are full, as in a long piece."""
    state = model.new_state(1, torch.device("cpu"))
    composer, token = torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long)
    model.prefill(torch.zeros(1, max(model.cfg.windows), dtype=torch.long), composer, state)

    def run() -> None:
        model.step(token, composer, state)

    return run
