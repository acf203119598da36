"""The engine's per-token work between two ONNX steps as compiled code: the leans, the draw, the ring writes.

Between two ONNX steps the engine's numpy calls run with cold caches (the step's pass over the weights
evicts them), so a token's mask, leans and draw cost about three times their hot time, and fewer numpy
calls only moved the misses to the next one (docs/results.md). `engine.c` does the same
arithmetic in a few kilobytes of code. It is built once per machine with the system C compiler
(`cc`, or `$CC`) into the user's cache folder (scripts/setup.sh builds it ahead); where no compiler
is found the engine keeps its numpy path, which stays the reference the tests compare with.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import subprocess
import sys
import tempfile
from ctypes import c_double, c_long, c_void_p
from pathlib import Path

import numpy as np

SOURCE = Path(__file__).with_name("engine.c")
FLAGS = ["-O2", "-shared", "-fPIC", "-std=c11"]
MAX_CLASSES = 64  # the pace lean's gap classes engine.c has room for


def cache_folder() -> Path:
    """Where built libraries live: $COMAGEN_CACHE, else the user's cache folder."""
    root = os.environ.get("COMAGEN_CACHE") or os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "comagen" / "native"


def build() -> Path:
    """The library for this source, compiler and flags, compiled on first use; written to a temporary
    name and moved into place, so processes building at once never load half a file."""
    compiler = os.environ.get("CC", "cc")
    made_for = " ".join([compiler, *FLAGS, sys.platform, platform.machine()])  # a shared home may serve two CPUs
    tag = hashlib.sha256(SOURCE.read_bytes() + made_for.encode()).hexdigest()[:16]
    target = cache_folder() / f"engine-{tag}.so"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            built = Path(tmp) / target.name
            subprocess.run([compiler, *FLAGS, "-o", str(built), str(SOURCE), "-lm"], check=True,
                           capture_output=True, timeout=120)
            os.replace(built, target)
    return target


P, L, D = c_void_p, c_long, c_double  # an array's address, an integer, a float
SIGNATURES = {  # engine.c's functions: (result, arguments)
    "kept_mass": (None, [P, P, L, P, P]),
    "lean_timing": (None, [P, P, P, P, L, P, L, L, P, P, L, L, L, D]),
    "draw_row": (L, [P, P, L, D, D]),
    "ring_write": (None, [P, P, P, P, P, L, L, L, P, P, L]),
    "histogram_log_p": (None, [P, P, L, D, P]),
    "pitch_lean": (None, [P, P, D, P, D, L, P, P]),
    "gap_tables": (None, [P, P, P, L, P, P]),
    "add_scaled": (None, [P, P, L, D, P]),
}


def _load() -> tuple[ctypes.CDLL | None, str | None]:
    """The loaded library, or None and the reason the numpy path runs instead."""
    if os.environ.get("COMAGEN_NATIVE", "1") == "0":
        return None, "switched off by COMAGEN_NATIVE=0"
    try:
        lib = ctypes.CDLL(str(build()))
    except (OSError, subprocess.SubprocessError) as error:
        detail = getattr(error, "stderr", b"") or b""
        return None, f"no compiled engine ({error}{': ' + detail.decode()[:200] if detail else ''})"
    for name, (result, arguments) in SIGNATURES.items():
        function = getattr(lib, name)
        function.restype, function.argtypes = result, arguments
    return lib, None


LIB, WHY_NOT = _load()


def reads(logits: np.ndarray, *masks: np.ndarray) -> bool:
    """Whether the compiled calls can work on these arrays in place: the library is loaded, the logits
    are float32 and every array is C-contiguous (else the caller keeps its numpy path)."""
    if LIB is None or logits.dtype != np.float32 or not logits.flags.c_contiguous:
        return False
    return all(m.flags.c_contiguous for m in masks) if masks else True


def address(array: np.ndarray) -> int:
    """Where a C-contiguous array's first element lives (checked: a strided view would be misread)."""
    if not array.flags.c_contiguous:
        raise ValueError("the compiled engine reads C-contiguous arrays only")
    return array.ctypes.data


class KeepsAddresses:
    """An object that keeps the addresses of its own arrays for the compiled calls. `take_addresses`
    takes them at set-up and again after every copy: deepcopy and pickle rebuild the arrays elsewhere
    (the duet deep-copies a generation's leans), so a copy must never keep the original's addresses,
    which dangle once the original is freed."""

    def take_addresses(self) -> None:
        raise NotImplementedError

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.take_addresses()
