"""Shared by the fine-tuning tests: a small folder of a user's files (three short real MAESTRO
*train* performances, one in a subfolder, plus a corrupt file, a text file named .mid and a stray
.txt) and `default` fine-tuned on it for a few steps through the real command, once per session."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from conftest import MAESTRO, maestro_rows

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "assets" / "checkpoints" / "default"
QUICK = ["--steps", "4", "--seq-len", "128", "--batch-size", "2", "--eval-every", "2", "--threads", "2"]


@dataclass
class Tuned:
    """A finished run: the user's folder, the output bundle, what the command printed."""

    data: Path
    out: Path
    stdout: str
    stderr: str
    summary: dict


def user_folder(where: Path) -> Path:
    """The three shortest train performances as a user might keep them, and three bad files."""
    rows = sorted(maestro_rows("train"), key=lambda r: float(r["duration"]))[:3]
    folder = where / "my pieces"
    (folder / "older").mkdir(parents=True)
    for row, name in zip(rows, ("first.mid", "older/second.midi", "third.MID"), strict=True):
        shutil.copy(MAESTRO / row["midi_filename"], folder / name)
    (folder / "broken.mid").write_bytes(b"MThd\x00\x00\x00\x06not really midi")
    (folder / "older" / "notes.mid").write_text("these are my notes, not music\n")
    (folder / "readme.txt").write_text("not a MIDI file name, so never read\n")
    return folder


def run_finetune(data: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    """`training/finetune.py` from the shipped `default`, as a user runs it."""
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    return subprocess.run([sys.executable, "training/finetune.py", "--from", str(BASE), "--data", str(data),
                           "--out", str(out), *extra], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)


_RUNS: dict[str, Tuned] = {}


def tuned_bundle(where: Path) -> Tuned:
    """`default` fine-tuned on `user_folder` for four short steps (built once per test session)."""
    if "quick" not in _RUNS:
        data = user_folder(where)
        out = where / "finetuned" / "my-style"
        proc = run_finetune(data, out, *QUICK, "--json")
        assert proc.returncode == 0, proc.stderr[-3000:]
        summary = json.loads(proc.stdout.strip().splitlines()[-1])
        _RUNS["quick"] = Tuned(data, out, proc.stdout, proc.stderr, summary)
    return _RUNS["quick"]
