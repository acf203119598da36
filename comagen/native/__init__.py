"""The engine's sampler as compiled code: the pitch and pace leans and the draw, one call each.

Between two ONNX steps the engine's numpy calls run with cold caches (the step's pass over the weights
evicts them), so a token's mask, leans and draw cost about three times their hot time, and fewer numpy
calls only moved the misses to the next one (docs/results.md). `engine.c` does the same
arithmetic in a few kilobytes of code. It is built once per machine with the system C compiler
(`cc`, or `$CC`) into the user's cache folder (scripts/setup.sh builds it ahead); where no compiler
is found the engine keeps its numpy path, which stays the reference the tests compare with.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import subprocess
import sys
import tempfile
from ctypes import c_double, c_int, c_long, c_void_p
from pathlib import Path

import numpy as np

SOURCE = Path(__file__).with_name("engine.c")
FLAGS = ["-O2", "-shared", "-fPIC", "-std=c11"]


def cache_folder() -> Path:
    """Where built libraries live: $COMAGEN_CACHE, else the user's cache folder."""
    root = os.environ.get("COMAGEN_CACHE") or os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "comagen" / "native"


def build() -> Path:
    """The library for this source, compiler and flags, compiled on first use; written to a temporary
    name and moved into place, so processes building at once never load half a file."""
    compiler = os.environ.get("CC", "cc")
    tag = hashlib.sha256(SOURCE.read_bytes() + " ".join([compiler, *FLAGS, sys.platform]).encode()).hexdigest()[:16]
    target = cache_folder() / f"engine-{tag}.so"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            built = Path(tmp) / target.name
            subprocess.run([compiler, *FLAGS, "-o", str(built), str(SOURCE), "-lm"], check=True,
                           capture_output=True, timeout=120)
            os.replace(built, target)
    return target


def _load() -> tuple[ctypes.CDLL | None, str | None]:
    """The loaded library, or None and the reason the numpy path runs instead."""
    if os.environ.get("COMAGEN_NATIVE", "1") == "0":
        return None, "switched off by COMAGEN_NATIVE=0"
    try:
        lib = ctypes.CDLL(str(build()))
    except (OSError, subprocess.SubprocessError) as error:
        detail = getattr(error, "stderr", b"") or b""
        return None, f"no native sampler ({error}{': ' + detail.decode()[:200] if detail else ''})"
    lib.kept_mass.argtypes = [c_void_p, c_void_p, c_long, c_void_p, c_void_p]
    lib.kept_mass.restype = None
    lib.lean_timing.argtypes = [c_void_p, c_void_p, c_void_p, c_void_p, c_long, c_void_p, c_long, c_long, c_void_p,
                                c_void_p, c_long, c_long, c_long, c_double]
    lib.lean_timing.restype = c_int
    lib.draw_row.argtypes = [c_void_p, c_void_p, c_long, c_double, c_double, c_void_p]
    lib.draw_row.restype = c_long
    lib.ring_write.argtypes = [c_void_p, c_void_p, c_void_p, c_void_p, c_void_p, c_long, c_long, c_long,
                               c_void_p, c_void_p, c_long]
    lib.ring_write.restype = None
    lib.histogram_log_p.argtypes = [c_void_p, c_void_p, c_long, c_double, c_void_p]
    lib.histogram_log_p.restype = None
    lib.pitch_lean.argtypes = [c_void_p, c_void_p, c_double, c_void_p, c_double, c_long, c_void_p, c_void_p]
    lib.pitch_lean.restype = None
    lib.gap_tables.argtypes = [c_void_p, c_void_p, c_void_p, c_long, c_void_p, c_void_p]
    lib.gap_tables.restype = None
    return lib, None


LIB, WHY_NOT = _load()


def address(array: np.ndarray) -> int:
    """Where a C-contiguous array's first element lives (checked: a strided view would be misread)."""
    if not array.flags.c_contiguous:
        raise ValueError("the native sampler reads C-contiguous arrays only")
    return array.ctypes.data


def kept_mass(row: np.ndarray, allowed: np.ndarray, lean: np.ndarray, weight: np.ndarray) -> None:
    """comagen.generation.keyprior.kept_mass on one row's group, in place (row float32, allowed bool,
    lean and weight float64, all of the group's length)."""
    LIB.kept_mass(address(row), address(allowed), len(row), address(lean), address(weight))


@functools.cache
def scratch(width: int) -> tuple[np.ndarray, int]:
    """A float64 buffer of `width` values for `draw_row`'s cumulative sums, and its address (one a
    vocabulary size, kept for the process)."""
    buffer = np.zeros(width)
    return buffer, buffer.ctypes.data
