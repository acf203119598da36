"""Shared by the app tests: a checkpoint to serve and a running `python app.py` on a free port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "assets" / "checkpoints" / "default"
MAESTRO = Path(os.environ.get("COMAGEN_MAESTRO_DIR", ROOT.parent / "shared" / "data" / "maestro"))


_TRAINED: dict[str, Path] = {}


def app_checkpoint(tmp: Path) -> Path:
    """The shipped checkpoint when it exists, else a tiny one trained here once per test session."""
    if (SHIPPED / "model.safetensors").is_file():
        return SHIPPED
    if "tiny" in _TRAINED:
        return _TRAINED["tiny"]
    out = tmp / "ckpt"
    subprocess.run([sys.executable, "training/train.py", "--config", "tests/configs/tiny.json", "--data",
                    str(MAESTRO), "--out", str(out), "--max-steps", "20", "--fresh", f"cache={tmp / 'cache'}",
                    "eval_every=20"], cwd=ROOT, check=True, capture_output=True, timeout=300)
    _TRAINED["tiny"] = out / "best"
    return out / "best"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_app(checkpoint: Path, log: Path) -> Iterator[str]:
    """Serve app.py in a subprocess; yield its URL; always stop it (and only it)."""
    port = free_port()
    env = {**os.environ, "COMAGEN_CHECKPOINT": str(checkpoint), "GRADIO_SERVER_PORT": str(port),
           "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_ANALYTICS_ENABLED": "False"}
    env.pop("COMAGEN_MAESTRO_DIR", None)
    url = f"http://127.0.0.1:{port}"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"app.py exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=2):
                    break
            except OSError:
                if time.time() > deadline:
                    raise RuntimeError(f"app.py did not answer within 120 s:\n{log.read_text()[-3000:]}") from None
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
