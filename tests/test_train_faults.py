"""Training under faults a real run meets: kill -9 at any moment, a full disk, an unwritable or busy --out."""

from __future__ import annotations

import json
import random
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from comagen.bundle.checkpoint import load_bundle
from comagen.errors import ConfigError
from comagen.files import folder_lock
from comagen.training.config import load_run_config
from comagen.training.trainer import train

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "configs" / "tiny.json"
STEPS = 12
FAULT_RUN = ["save_every=1", "eval_every=4", "eval_files=4", "eval_max_tokens=1024"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory, maestro_dir: Path) -> Path:
    """A token cache built once, so the runs below spend their time training."""
    root = tmp_path_factory.mktemp("fault_cache")
    _train_in_process(tmp_path_factory.mktemp("warm"), maestro_dir, root, "stop_after=1", "eval_every=0")
    return root


def _args(out: Path, maestro: Path, cache: Path, *extra: str) -> list[str]:
    return [f"train.out={json.dumps(str(out))}", f"data={json.dumps(str(maestro))}",
            f"cache={json.dumps(str(cache))}", f"max_steps={STEPS}", *extra]


def _train_in_process(out: Path, maestro: Path, cache: Path, *extra: str):
    model_cfg, cfg = load_run_config(TINY, _args(out, maestro, cache, *extra))
    return train(model_cfg, cfg)


def _start(out: Path, maestro: Path, cache: Path, *extra: str, limit_bytes: int | None = None) -> subprocess.Popen:
    def limit() -> None:
        if limit_bytes is not None:  # writes past this fail as a full disk does (Python ignores SIGXFSZ)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    cmd = [sys.executable, "training/train.py", "--config", str(TINY), "--json",
           *_args(out, maestro, cache, *extra)]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=limit)


def _saved_step(bundle: Path) -> int:
    try:
        return int(json.loads((bundle / "config.json").read_text())["summary"]["step"])
    except (OSError, ValueError, KeyError):
        return 0


def _kill_when(proc: subprocess.Popen, ready: Callable[[], bool], limit_s: float = 120.0) -> None:
    """kill -9 `proc` as soon as `ready()` holds (polled every millisecond), or when it ends by itself."""
    deadline = time.monotonic() + limit_s
    while proc.poll() is None and not ready() and time.monotonic() < deadline:
        time.sleep(0.001)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)


def test_kill_9_at_any_moment_then_resume_equals_uninterrupted(tmp_path: Path, maestro_dir: Path,
                                                               cache: Path) -> None:
    whole = _train_in_process(tmp_path / "whole", maestro_dir, cache, *FAULT_RUN)
    out = tmp_path / "killed"
    moments: list[Callable[[], bool]] = [
        lambda: any(out.glob(".last.*.tmp")),  # while a checkpoint is being written
        lambda: _saved_step(out / "last") >= 3,  # during the step after a save
        lambda: _saved_step(out / "last") >= 7,  # the next step, then evaluation at step 8
    ]
    rng = random.Random(0)
    for ready in moments:
        delay = rng.uniform(0.0, 0.05)  # a little jitter, so the kill also lands mid-operation
        _kill_when(_start(out, maestro_dir, cache, *FAULT_RUN),
                   lambda ready=ready, delay=delay: ready() and (time.sleep(delay) or True))
        for name in ("last", "best"):
            if (out / name).exists():
                assert load_bundle(out / name).summary["step"] > 0
    proc = _start(out, maestro_dir, cache, *FAULT_RUN)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-2000:]
    assert json.loads(stdout.strip().splitlines()[-1])["step"] == STEPS
    resumed = load_bundle(out / "last")
    assert resumed.summary["step"] == STEPS
    history = torch.load(out / "last" / "trainer.pt", weights_only=True)["history"].tolist()
    assert [round(v, 6) for _, v in history] == [round(v, 6) for _, v in whole.losses]


def test_full_disk_is_one_line_and_keeps_the_last_good_checkpoint(tmp_path: Path, maestro_dir: Path,
                                                                  cache: Path) -> None:
    out = tmp_path / "run"
    _train_in_process(out, maestro_dir, cache, "stop_after=2", "eval_every=0")
    proc = _start(out, maestro_dir, cache, "save_every=1", "eval_every=0", limit_bytes=64 * 1024)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 2, stderr[-2000:]
    assert "cannot write checkpoint" in stderr and "previous checkpoint is kept" in stderr
    assert "Traceback" not in stderr
    assert "Traceback" in (out / "train.log").read_text()  # the run's own log keeps what the terminal does not
    assert load_bundle(out / "last").summary["step"] == 2
    assert not list(out.glob(".last.*"))


def test_unwritable_out_is_one_line(tmp_path: Path, maestro_dir: Path, cache: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    proc = _start(blocker / "run", maestro_dir, cache)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 2 and "cannot write to --out" in stderr and "Traceback" not in stderr


def test_second_run_into_a_busy_out_stops_clearly(tmp_path: Path, maestro_dir: Path, cache: Path) -> None:
    out = tmp_path / "busy"
    with folder_lock(out), pytest.raises(ConfigError, match="another training run"):
        _train_in_process(out, maestro_dir, cache)
