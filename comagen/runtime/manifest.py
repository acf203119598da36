"""The export record (`runtime/export.json`) and the checks that make a stale or damaged export harmless.

An export belongs to one set of weights: the record keeps the SHA-256 of the bundle's
`model.safetensors` and of every file it wrote, with the windows, opset and dtype it was made
with. A record whose weights hash, files or settings no longer match is ignored with a note, so
generation falls back to torch instead of running the wrong graph.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

from comagen.errors import ComagenError

FORMAT = 4  # 2: per-scale rings that the step reads in place (runtime/ring.py); 3: conv state as rows;
# 4: each ring's size an axis of the graph (any window up to the trained one)
RUNTIME_DIR = "runtime"
MANIFEST = "export.json"
WEIGHTS = "model.safetensors"
PRECISIONS = ("fp32", "int8")

_hashes: dict[tuple[str, int, int], str] = {}
_hash_lock = threading.Lock()


class StaleExport(ComagenError):
    """An export that does not belong to these weights or whose files are damaged."""


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, remembered while its size and mtime stay the same (bundles are read often)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _hash_lock:
        if key in _hashes:
            return _hashes[key]
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    with _hash_lock:
        _hashes[key] = digest.hexdigest()
    return _hashes[key]


@dataclass
class ExportRecord:
    """What `python -m comagen export` made: files per precision and the settings they hold."""

    windows: list[int]
    opset: int
    weights_sha256: str
    files: dict[str, dict[str, str]] = field(default_factory=dict)  # precision -> {"name", "sha256"}
    dtype: str = "float32"
    prefer: str = "fp32"  # what `auto` runs: "torch", "fp32" or "int8", whichever measured fastest at export
    step_ms: dict[str, float] = field(default_factory=dict)  # batch-1 step time of torch and each file
    threads: int = 1
    versions: dict[str, str] = field(default_factory=dict)
    format: int = FORMAT

    def save(self, folder: Path) -> Path:
        from comagen.files import write_atomic

        path = folder / MANIFEST
        write_atomic(path, json.dumps(asdict(self), indent=1))
        path.chmod(0o644)  # readable like the bundle's other files (the temp file it came from was private)
        return path

    @classmethod
    def load(cls, folder: Path) -> ExportRecord:
        """Read a record; a missing or unreadable one raises `StaleExport`."""
        path = folder / MANIFEST
        try:
            data = json.loads(path.read_text())
            record = cls(**data)
        except (OSError, ValueError, TypeError) as exc:
            raise StaleExport(f"{path} is unreadable ({type(exc).__name__})") from None
        if record.format != FORMAT:
            raise StaleExport(f"{path} is format {record.format}, this comagen reads format {FORMAT}")
        return record

    def check(self, folder: Path, weights: Path, windows: list[int], precision: str) -> Path:
        """The ONNX file of `precision` if it belongs to `weights` at `windows`, else `StaleExport`."""
        if self.weights_sha256 != file_sha256(weights):
            raise StaleExport(f"{folder} was exported from other weights than {weights.name}")
        if list(self.windows) != list(windows):
            raise StaleExport(f"{folder} was exported at windows {self.windows}, the model has {windows}")
        entry = self.files.get(precision)
        if entry is None:
            raise StaleExport(f"{folder} holds no {precision} export")
        path = folder / entry["name"]
        if not path.is_file() or file_sha256(path) != entry["sha256"]:
            raise StaleExport(f"{path} is missing or damaged (its hash differs from {MANIFEST})")
        return path
