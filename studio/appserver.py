"""A real `python app.py` on a free loopback port, for the tests and benches that drive the app over
HTTP: start it, wait until it answers, read its memory and CPU from /proc, always stop it.

The server gets a temp folder of its own (TMPDIR), so its uploads, gradio's cache and its result
files are all in one place a caller can inspect, and nothing leaks into the machine's /tmp.
Needs a source checkout (app.py beside the package).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT = 120.0  # import torch + gradio and load a checkpoint on a busy 2-core machine


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class AppServer:
    """A running app: its URL, process, log and private temp folder."""

    url: str
    proc: subprocess.Popen
    log: Path
    tmp: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def out_root(self) -> Path:
        """Where studio writes result files (studio.OUT_ROOT inside the server)."""
        return self.tmp / "comagen-app"

    @property
    def upload_root(self) -> Path:
        """Gradio's cache: uploads, the copies of results it serves, streamed images."""
        return self.out_root / "gradio"

    def alive(self) -> bool:
        """The process runs and its page answers."""
        if self.proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(self.url, timeout=10):
                return True
        except OSError:
            return False

    def memory_kib(self) -> dict[str, int]:
        """VmRSS (now) and VmHWM (peak since start) of the server process, in KiB."""
        out = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
        return out

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process has used so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.is_file() else ""


@contextmanager
def serve(checkpoint: Path | None, log: Path, *, tmp: Path | None = None, env: dict[str, str] | None = None,
          timeout: float = START_TIMEOUT, root: Path = ROOT) -> Iterator[AppServer]:
    """Serve `root`/app.py with `checkpoint` (None: the app's own choice) on 127.0.0.1; yield it once
    its page answers; always stop it (only it). `env` adds variables (e.g. COMAGEN_OUT_MAX_AGE); `tmp`
    is its temp folder, kept for the caller to inspect (without one, a fresh folder is made and
    removed afterwards); `root` is the folder it runs in (an assembled Space, say)."""
    port = free_port()
    own_tmp = tmp is None
    tmp = Path(tempfile.mkdtemp(prefix="comagen-server-")) if tmp is None else Path(tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1",
                "GRADIO_ANALYTICS_ENABLED": "False", "TMPDIR": str(tmp), **(env or {})}
    for inherited in ("COMAGEN_MAESTRO_DIR", "GRADIO_TEMP_DIR", "COMAGEN_OUT_MAX_AGE", "COMAGEN_CHECKPOINTS",
                      "COMAGEN_CHECKPOINT"):
        if inherited not in (env or {}):
            full_env.pop(inherited, None)
    if checkpoint is not None:
        full_env["COMAGEN_CHECKPOINT"] = str(checkpoint)
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "app.py"], cwd=root, env=full_env, stdout=out,
                                stderr=subprocess.STDOUT)
    server = AppServer(f"http://127.0.0.1:{port}", proc, log, tmp)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"app.py exited with {proc.returncode}:\n{server.log_tail()}")
            try:
                with urllib.request.urlopen(server.url, timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"app.py did not answer within {timeout:.0f} s:\n{server.log_tail()}") from None
                time.sleep(0.5)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if own_tmp:
            shutil.rmtree(tmp, ignore_errors=True)
