"""Which runtime a generation runs on: "auto", "onnx", "onnx-fp32", "onnx-int8" or "torch".

auto: whichever of torch, the ONNX fp32 step and the ONNX int8 step measured fastest when the
bundle was exported (int8 only if it was the fastest); a bundle without an export runs on torch
without a word. "onnx" is the faster of the two ONNX files; an explicit ONNX choice on a bundle
without an export is a user error. The step serves the trained windows and any narrower ones (from
MIN_WINDOW). Whatever was asked, a request the export cannot serve (a wider window, a model on a
GPU) or an export that is stale or damaged runs on torch with a one-line note.
"""

from __future__ import annotations

from comagen.bundle.checkpoint import Bundle
from comagen.errors import ConfigError
from comagen.runtime.manifest import MANIFEST, RUNTIME_DIR, WEIGHTS, ExportRecord, StaleExport
from comagen.runtime.onnx_stream import OnnxRuntime, default_threads
from comagen.runtime.ring import MIN_WINDOW, export_serves
from comagen.runtime.step import check_exportable
from comagen.runtime.stream import Runtime, TorchRuntime

RUNTIMES = ("auto", "onnx", "onnx-fp32", "onnx-int8", "torch")


def check_runtime(choice: str) -> str:
    if choice not in RUNTIMES:
        raise ConfigError(f"unknown runtime {choice!r}: use one of {', '.join(RUNTIMES)}")
    return choice


def choose_runtime(bundle: Bundle, choice: str = "auto", windows: list[int] | None = None,
                   threads: int | None = None) -> Runtime:
    """The runtime for `choice`, with `note` set when it had to fall back to torch."""
    model = bundle.model
    if check_runtime(choice) == "torch":
        return TorchRuntime(model, windows)
    folder = bundle.path / RUNTIME_DIR
    if not (folder / MANIFEST).is_file():
        if choice == "auto":
            return TorchRuntime(model, windows)
        raise ConfigError(f"{bundle.path} has no ONNX export: run python -m comagen export --checkpoint "
                          f"{bundle.path}{' --int8' if choice == 'onnx-int8' else ''}, or use --runtime torch")
    try:
        check_exportable(model)
    except ConfigError as exc:
        return TorchRuntime(model, windows, note=f"{exc}; decoding on torch")
    trained = list(model.cfg.windows)
    if windows is not None and not export_serves(windows, trained):
        return TorchRuntime(model, windows, note=f"the ONNX step serves windows from {MIN_WINDOW} up to the trained "
                                                 f"{trained}; windows {list(windows)} decode on torch")
    if next(model.parameters()).device.type != "cpu":
        return TorchRuntime(model, windows, note="the ONNX step runs on the CPU and this model is on "
                                                 f"{next(model.parameters()).device}; decoding on torch")
    try:
        record = ExportRecord.load(folder)
        precision = _precision(choice, record)
        if precision is None:
            return TorchRuntime(model, windows)
        path = record.check(folder, bundle.path / WEIGHTS, trained, precision)
        return OnnxRuntime(model, path, precision, threads or default_threads(), windows=windows)
    except StaleExport as exc:
        return TorchRuntime(model, windows, note=f"ignoring the ONNX export: {exc}; decoding on torch")
    except Exception as exc:  # onnxruntime raises its own types for a file it cannot load
        return TorchRuntime(model, windows, note=f"ignoring the ONNX export: {folder} does not load "
                                                 f"({type(exc).__name__}); decoding on torch")


def _precision(choice: str, record: ExportRecord) -> str | None:
    """The ONNX file to run for `choice` (auto: the measured fastest; onnx: the faster file), or None
    where auto found torch the fastest."""
    if choice.startswith("onnx-"):
        return choice.removeprefix("onnx-")
    if choice == "auto":
        return None if record.prefer == "torch" else record.prefer
    timed = {p: ms for p, ms in record.step_ms.items() if p in record.files}
    return min(timed, key=timed.get) if timed else "fp32"
