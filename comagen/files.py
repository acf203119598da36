"""Files that several processes share: an exclusive folder lock and writes that land whole or not at all.

Two DDP ranks, two training runs or a run and `python -m comagen tokenize` may build the same token
cache or write the same output folder at once. Every write goes to a temp file with a name of its
own in the target folder and is renamed into place, and work that must happen once (building a
cache) happens under a lock that the others wait on.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import fcntl
import functools
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

LOCK_NAME = ".lock"
_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


@contextmanager
def folder_lock(folder: Path, *, wait: bool = True, waiting_note: str | None = None) -> Iterator[bool]:
    """Hold an exclusive lock on `folder` (a `.lock` file inside it); the OS drops it if we die.

    Yields True once held; with `wait=False` yields False at once when another process holds it.
    `waiting_note` is printed to stderr when we have to wait, so a blocked run says why.
    """
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / LOCK_NAME).open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                yield False
                return
            if waiting_note:
                print(waiting_note, file=sys.stderr, flush=True)
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextmanager
def atomic_file(path: Path, mode: str = "wb") -> Iterator[IO]:
    """Open a temp file beside `path` (a name no other process uses) and rename it onto `path`
    when the block ends without an error; on an error the temp file is removed and `path` is untouched."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write `data` to `path` so readers see the old file or the new one, never a part."""
    with atomic_file(path, "wb" if isinstance(data, bytes) else "w") as fh:
        fh.write(data)


@functools.cache
def _renameat2() -> Callable[..., int] | None:
    """libc's renameat2, looked up once (find_library runs helper programs)."""
    libc_name = ctypes.util.find_library("c") if sys.platform.startswith("linux") else None
    return getattr(ctypes.CDLL(libc_name, use_errno=True), "renameat2", None) if libc_name else None


def exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    done = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return done == 0
