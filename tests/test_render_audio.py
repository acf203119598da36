"""training/render_audio.py: real renders of real MAESTRO files, resumed after a partial file."""

import subprocess
import sys
from pathlib import Path

from comagen.audio.beatfile import read_beats

ROOT = Path(__file__).resolve().parents[1]


def render(maestro: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "training/render_audio.py", "--data", str(maestro), "--out", str(out),
                           "--max-files", "2", "--seconds", "3", "--samples-per-beat", "2000"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=True)


def test_resumes_after_a_partial_file(maestro_dir: Path, tmp_path: Path) -> None:
    render(maestro_dir, tmp_path)
    first, second = sorted(tmp_path.rglob("*.beats"))
    kept = first.stat().st_mtime_ns
    second.unlink()
    second.with_name(second.name + ".part").write_bytes(b"CMGBEAT\0 killed here")  # what a kill leaves
    done = render(maestro_dir, tmp_path)
    assert first.stat().st_mtime_ns == kept  # cached: not rendered again
    assert read_beats(second).samples_per_beat == 2000 and not list(tmp_path.rglob("*.part"))
    assert "2 files" in done.stdout
