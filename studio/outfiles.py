"""The files the page links to (results, and gradio's copies of uploads and results): one folder,
swept so that no file outlives COMAGEN_OUT_MAX_AGE, busy server or idle."""

from __future__ import annotations

import math
import os
import tempfile
import threading
import time
from pathlib import Path

from comagen.errors import ConfigError
from studio.memory import release_memory

OUT_ROOT = Path(tempfile.gettempdir()) / "comagen-app"  # audio/MIDI files the page links to
OUT_MAX_AGE = 3600.0  # result and upload files older than this are removed (COMAGEN_OUT_MAX_AGE overrides)
OUT_MIN_AGE = 2.0  # the smallest COMAGEN_OUT_MAX_AGE (a file must outlive its own download)


def out_max_age_from_env() -> float:
    """COMAGEN_OUT_MAX_AGE (seconds a result or upload file lives), OUT_MAX_AGE when unset."""
    raw = os.environ.get("COMAGEN_OUT_MAX_AGE", "").strip()
    if not raw:
        return OUT_MAX_AGE
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < OUT_MIN_AGE:
        raise ConfigError(f"COMAGEN_OUT_MAX_AGE={raw!r}: must be a number of seconds, at least {OUT_MIN_AGE:.0f}")
    return value


def clean_interval(max_age: float) -> float:
    """Longest sleep of the cleaner between sweeps: a twentieth of the age, 1 to 60 s."""
    return min(max(max_age / 20, 1.0), 60.0)


def clean_out_dir(max_age: float | None = None, roots: list[Path] | None = None) -> float | None:
    """Remove every file under `roots` (default OUT_ROOT) once it is `max_age` old (default
    COMAGEN_OUT_MAX_AGE), and folders left empty as long; return when (epoch seconds) the next file
    expires, None when none is left.

    A file's age counts from its ctime, when it appeared in this folder: gradio copies results
    with their original mtime, and a copy must not expire before its first download."""
    max_age = out_max_age_from_env() if max_age is None else max_age
    expiries = [_sweep(root, max_age) for root in (roots if roots is not None else [OUT_ROOT]) if root.is_dir()]
    return min((e for e in expiries if e is not None), default=None)


def _sweep(root: Path, max_age: float) -> float | None:
    """One root's sweep (see `clean_out_dir`): the next expiry of what is left, None when nothing is."""
    next_expiry = None
    for folder, _, files in os.walk(root, topdown=False):
        for name in files:
            path = Path(folder) / name
            try:
                expiry = path.lstat().st_ctime + max_age
                if expiry <= time.time():
                    path.unlink()
                    continue
            except FileNotFoundError:  # removed meanwhile (a download finished, another sweep)
                continue
            next_expiry = expiry if next_expiry is None else min(next_expiry, expiry)
        here = Path(folder)
        try:
            if here != root and here.lstat().st_ctime + max_age <= time.time() and not any(here.iterdir()):
                here.rmdir()
        except OSError:  # filled or removed meanwhile
            continue
    return next_expiry


def start_cleaner(max_age: float | None = None, roots: list[Path] | None = None,
                  stop: threading.Event | None = None) -> threading.Thread:
    """A daemon thread that removes each upload and result file as soon as it is `max_age` old.

    `new_out_dir` alone only cleans when a new result is made, so an idle server would keep the
    last results (and gradio's copies of them) forever; this wakes when the next file expires, and
    at least every `clean_interval` to see new ones. Each sweep also returns freed heap to the OS,
    so a server at rest goes back near its resting RSS after a busy spell. Set `stop` to end it.
    """
    stop = stop or threading.Event()

    def loop() -> None:
        while not stop.is_set():
            age = out_max_age_from_env() if max_age is None else max_age
            try:
                expiry = clean_out_dir(age, roots)
            except OSError:  # a sweep that fails (permissions, a vanished mount) tries again later
                expiry = None
            release_memory()
            wait = clean_interval(age) if expiry is None else expiry - time.time()
            stop.wait(min(max(wait, 0.05), clean_interval(age)))

    thread = threading.Thread(target=loop, daemon=True, name="comagen-cleaner")
    thread.start()
    return thread


def new_out_dir() -> Path:
    """A fresh folder for one result's files; files older than COMAGEN_OUT_MAX_AGE are removed."""
    OUT_ROOT.mkdir(parents=True, exist_ok=True)
    clean_out_dir()
    return Path(tempfile.mkdtemp(prefix="take-", dir=OUT_ROOT))
