"""Shared by the app tests: a checkpoint to serve and a running `python app.py` on a free port."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from studio.appserver import serve

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


@contextmanager
def running_app(checkpoint: Path, log: Path) -> Iterator[str]:
    """Serve app.py in a subprocess; yield its URL; always stop it (and only it)."""
    with serve(checkpoint, log) as server:
        yield server.url
