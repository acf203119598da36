"""`python -m comagen export`: the conformer's one-token step as ONNX files inside its bundle.

    BUNDLE/runtime/step.onnx        fp32 step (whatever the bundle's weight dtype: bf16 is widened)
    BUNDLE/runtime/step.int8.onnx   with --int8: MatMul/Gemm weights quantised to int8 (see `Recipe`)
    BUNDLE/runtime/export.json      windows, opset, dtype, hashes (see manifest.py), step timings

The dynamo exporter traces `StepFunction` with a dynamic batch axis (classifier-free guidance runs
conditional and unconditional rows together; variations add rows). Every file is checked against
the torch step before it is recorded, and written whole or not at all.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from comagen.bundle.checkpoint import Bundle
from comagen.errors import CheckpointError, ComagenError
from comagen.model.conformer import Conformer
from comagen.runtime.manifest import MANIFEST, RUNTIME_DIR, WEIGHTS, ExportRecord, file_sha256
from comagen.runtime.onnx_stream import default_threads, session_options
from comagen.runtime.ring import MIN_WINDOW, ring_slots
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


@dataclass(frozen=True)
class Recipe:
    """How the exported graph is prepared for ONNX Runtime (each lever measured in bench/decode.py
    --sections step; all on by default).

    fold: ONNX Runtime's basic optimisations first (constant folding): the tied head's transposed
    embedding becomes a constant weight, so the head is quantised like every other matrix.
    skip_thin: matrices with at most THIN columns (the hyper-connections' 320 x 2 mixers) stay fp32:
    quantising their input costs more than the 640 multiplies it would save.
    optimized: the file is saved after ONNX Runtime's own fusions (extended level: no layout
    changes tied to this CPU), so a session starts from the graph it will run.
    block_bits: 0 quantises the weights dynamically to int8 per channel (what ships); 8 or 4 stores
    them in blocks of BLOCK rows at that many bits (ONNX Runtime's MatMulNBits, the activations
    quantised to int8 inside the kernel), a trial row of the step bench.
    """

    fold: bool = True
    skip_thin: bool = True
    optimized: bool = True
    block_bits: int = 0


THIN = 8
BLOCK = 32


def export_bundle(bundle: Bundle, out: Path | None = None, int8: bool = False, threads: int | None = None,
                  measure_steps: int = 32, int8_only: bool = False, recipe: Recipe = Recipe()) -> dict:
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
    step = StepFunction(model).eval()
    precisions = ["int8"] if int8_only else ["fp32", "int8"] if int8 else ["fp32"]
    record = ExportRecord(windows=list(model.cfg.windows), opset=OPSET, weights_sha256=file_sha256(weights),
                          threads=threads, versions=_versions())
    with tempfile.TemporaryDirectory(dir=out, prefix=".export.") as tmp:
        traced = Path(tmp) / "traced.onnx"
        trace_step(step, traced)
        staged = {p: Path(tmp) / FILES[p] for p in ("fp32", *(["int8"] if int8 else []))}
        for precision, path in staged.items():
            prepare(traced, path, precision, recipe)
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


def example_inputs(step: StepFunction, batch: int, seen: int = 0, seed: int = 0,
                   windows: list[int] | None = None) -> tuple[torch.Tensor, ...]:
    """Token, composer, seen, [offset] and random state for `batch` rows (batch >= 2 keeps the axis
    dynamic) at `windows` (None: the trained ones); the offset is as far from the origin as a stream
    ever gets."""
    cfg = step.model.cfg
    gen = torch.Generator().manual_seed(seed)
    token = torch.randint(0, cfg.vocab_size, (batch,), generator=gen)
    composer = torch.randint(0, cfg.n_composers, (batch,), generator=gen)
    state = [torch.randn(shape, generator=gen) for shape in state_shapes(step.model, batch, windows)]
    offset = [torch.tensor(2 * max(windows or cfg.windows) - 1)] if uses_offset(step.model) else []
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


def trace_step(step: StepFunction, path: Path) -> None:
    """The step traced into one fp32 ONNX file, batch axis dynamic, and each scale's ring slots too (from
    MIN_WINDOW - 1 up to the trained window's), so one file serves every narrower window."""
    cfg = step.model.cfg
    inputs = input_names(step.model)
    batch = torch.export.Dim("batch", min=1)
    rows = {0: batch}
    slots = [{0: batch, 2: torch.export.Dim(f"slots{s}", min=ring_slots(MIN_WINDOW), max=ring_slots(w))}
             for s, w in enumerate(cfg.windows)]
    layer = [*slots, *slots, rows]  # keys, values, conv
    scalars = len(inputs) - len(state_names(step.model))
    trace(step, example_inputs(step, 2), path, inputs, ["logits", *update_names(step.model)],
          (rows, rows, None, (*[None] * (scalars - 3), *layer * cfg.depth)))


def trace(module: torch.nn.Module, example: tuple, path: Path, inputs: list[str], outputs: list[str],
          dynamic_shapes: tuple) -> None:
    """`module` traced by the dynamo exporter into one ONNX file (the settings every step shares)."""
    with _quiet(), torch.no_grad():
        torch.onnx.export(module, example, str(path), dynamo=True, opset_version=OPSET, input_names=inputs,
                          output_names=outputs, dynamic_shapes=dynamic_shapes, external_data=False, verbose=False)


def _ort_optimize(src: Path, dst: Path, level: str) -> None:
    """`src` as ONNX Runtime optimises it at `level` ("basic" or "extended"), saved to `dst`."""
    import onnxruntime as ort

    options = session_options(1)
    options.graph_optimization_level = {"basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                                        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED}[level]
    options.optimized_model_filepath = str(dst)
    ort.InferenceSession(str(src), options, providers=["CPUExecutionProvider"])


def _thin_matmuls(path: Path) -> list[str]:
    """Names of the MatMul/Gemm nodes whose constant weight has at most THIN rows or columns."""
    import onnx

    graph = onnx.load(str(path)).graph
    dims = {i.name: tuple(i.dims) for i in graph.initializer}
    return [n.name for n in graph.node
            if n.op_type in ("MatMul", "Gemm") and n.input[1] in dims and min(dims[n.input[1]]) <= THIN]


def prepare(src: Path, dst: Path, precision: str, recipe: Recipe) -> None:
    """The fp32 graph `src` as the `precision` file `dst`: folded, quantised, optimised per `recipe`."""
    with tempfile.TemporaryDirectory(dir=dst.parent, prefix=".prepare.") as tmp:
        current = src
        if recipe.fold:
            _ort_optimize(current, Path(tmp) / "folded.onnx", "basic")
            current = Path(tmp) / "folded.onnx"
        if precision == "int8":
            exclude = _thin_matmuls(current) if recipe.skip_thin else []
            if recipe.block_bits:
                _block_quantize(current, Path(tmp) / "int8.onnx", recipe.block_bits, exclude)
            else:
                _quantize(current, Path(tmp) / "int8.onnx", exclude)
            current = Path(tmp) / "int8.onnx"
        if recipe.optimized:
            _ort_optimize(current, dst, "extended")
        else:
            shutil.copyfile(current, dst)


def _quantize(src: Path, dst: Path, exclude: list[str]) -> None:
    """Dynamic int8 quantisation of the weight matrices only (activation x activation products,
    the attention scores, stay fp32); the `exclude` nodes stay fp32 too."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet():  # it logs a pre-processing hint meant for convolutional image models
        quantize_dynamic(src, dst, op_types_to_quantize=["MatMul", "Gemm"], weight_type=QuantType.QInt8,
                         per_channel=True, nodes_to_exclude=exclude, extra_options={"MatMulConstBOnly": True})


def _block_quantize(src: Path, dst: Path, bits: int, exclude: list[str]) -> None:
    """Weight-only quantisation of the weight matrices in symmetric blocks of BLOCK rows at `bits`
    bits, multiplied with int8 activations (accuracy level 4): ONNX Runtime's path for decoders at
    batch 1 on the CPU. The `exclude` nodes stay fp32."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    narrator = logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer")  # a line per node skipped
    level = narrator.level
    narrator.setLevel(logging.ERROR)
    try:
        quantizer = MatMulNBitsQuantizer(onnx.load(str(src)), bits=bits, block_size=BLOCK, is_symmetric=True,
                                         accuracy_level=4, nodes_to_exclude=exclude)
        quantizer.process()
        quantizer.model.save_model_to_file(str(dst), use_external_data_format=False)
    finally:
        narrator.setLevel(level)


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
        if tol is not None:  # relative to each output's size: stored xpos keys reach several hundred
            err = max(float(np.abs(g - w).max() / max(1.0, np.abs(w).max())) for g, w in zip(got, want, strict=True))
            if err > tol:
                raise ComagenError(f"the exported {precision} step differs from torch by {err:.2g} of an "
                                   "output's size; nothing was written")


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
