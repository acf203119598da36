"""Giving freed heap back to the operating system, so a server at rest returns near its resting size."""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable


def _libc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None on another C library."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _libc_trim()


def release_memory() -> None:
    """Give freed heap pages back to the OS. glibc keeps what a thread freed in that thread's
    arena, and every generation runs on a new thread, so without this a server's RSS climbs
    towards the sum of its arenas' peaks instead of returning to its resting size."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)
