"""Decode runtimes behind one small interface: the torch model itself, or its exported ONNX step."""

from __future__ import annotations

from comagen.runtime.choose import RUNTIMES, check_runtime, choose_runtime
from comagen.runtime.stream import Runtime, Stream, TorchRuntime

__all__ = ["RUNTIMES", "Runtime", "Stream", "TorchRuntime", "check_runtime", "choose_runtime"]
