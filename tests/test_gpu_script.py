"""The one-call GPU script of issue 20 (`scripts/gpu_flagship_v2.sh`) stays green at tiny size on the
CPU, so that it still works when a GPU is lent: it trains through the compiled path, evaluates on the
test split, and leaves in $OUT what the GPU call brings back (the bundle's metadata, its weights in parts)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_flagship_v2_script_runs_end_to_end_at_tiny_size(tmp_path: Path, maestro_dir: Path) -> None:
    env = {**os.environ, "OUT": str(tmp_path), "COMAGEN_MAESTRO_DIR": str(maestro_dir)}
    done = subprocess.run(["bash", "scripts/gpu_flagship_v2.sh", "tiny"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    trained = json.loads((tmp_path / "train.log").read_text().strip().splitlines()[-1])
    assert trained["step"] == 4 and trained["stopped"] == "max_steps"
    tested = json.loads((tmp_path / "test_eval.json").read_text())
    assert tested["split"] == "test" and tested["files"] == 2 and math.isfinite(tested["bits_per_note"])
    with tarfile.open(tmp_path / "bundle_meta.tar") as tar:
        assert {"config.json", "tokenizer.json", "MODEL_CARD.md"} <= set(tar.getnames())
    assert (tmp_path / "weights.part00").stat().st_size > 0
