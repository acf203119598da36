"""What bench/app_load.py watches on the server: the age of its temp files (while the load runs and
until they expire), whether it has gone idle, and the small statistics of the report."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from studio.appserver import AppServer

IDLE_TIMEOUT = 60.0  # how long the server may keep working after a client left
IDLE_CPU = 0.3  # CPU seconds per second below which the server counts as idle
AGE_SLACK = 10.0  # seconds a file may overstay COMAGEN_OUT_MAX_AGE (the cleaner's wake-up on a busy CPU)


@dataclass
class Monitor:
    """Watches the age of the server's oldest temp file until stopped (peak RSS is VmHWM)."""

    server: AppServer
    interval: float = 0.25
    oldest_file_s: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True, name="load-monitor")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.oldest_file_s = max(self.oldest_file_s, oldest_file_age(self.server.out_root))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def temp_files(root: Path) -> list[tuple[Path, float]]:
    """Every file under `root` (the app's own folder: libraries such as ONNX Runtime drop files of their
    own in the temp folder) and when it appeared (ctime, as the app's cleaner counts)."""
    out = []
    for folder, _, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            try:
                out.append((path, path.lstat().st_ctime))
            except FileNotFoundError:
                continue
    return out


def oldest_file_age(root: Path) -> float:
    now = time.time()
    return max((now - ctime for _, ctime in temp_files(root)), default=0.0)


def wait_idle(server: AppServer, timeout: float = IDLE_TIMEOUT) -> float | None:
    """Seconds until the server uses under IDLE_CPU for a whole second; None if it never does."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        before = server.cpu_seconds()
        time.sleep(1.0)
        if server.cpu_seconds() - before < IDLE_CPU:
            return time.monotonic() - start
    return None


def mib(kib: int) -> float:
    return round(kib / 1024, 1)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation: with 8 values p95 is the slowest)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, -(-len(ordered) * q // 100) - 1))] if ordered else 0.0


def wait_for_expiry(server: AppServer, max_age: float) -> tuple[bool, list[str]]:
    """Wait (at most until every temp file the run left is max_age old, plus AGE_SLACK) for them
    all to go; then none may remain, nor any file older than max_age."""
    files = temp_files(server.out_root)
    deadline = max((ctime for _, ctime in files), default=time.time()) + max_age + AGE_SLACK
    while any(p.exists() for p, _ in files) and time.time() < deadline:
        time.sleep(0.25)
    left = [str(p.relative_to(server.tmp)) for p, _ in files if p.exists()]
    too_old = [str(p.relative_to(server.tmp)) for p, ctime in temp_files(server.out_root)
               if time.time() - ctime > max_age + AGE_SLACK]
    return not left and not too_old, left + too_old
