"""Training on real MAESTRO crops: checkpoints that load and evaluate, exact resume, DDP, bad config."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

from comagen.bundle.checkpoint import load_bundle
from comagen.errors import CheckpointError, ConfigError
from comagen.training.config import load_run_config
from comagen.training.trainer import train

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "configs" / "tiny.json"


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("token_cache")


def _run(out: Path, maestro: Path, cache: Path, *extra: str):
    model_cfg, cfg = load_run_config(TINY, [f"train.out={json.dumps(str(out))}", f"data={json.dumps(str(maestro))}",
                                           f"cache={json.dumps(str(cache))}", *extra])
    given = (model_cfg.to_dict(), asdict(cfg))
    result = train(model_cfg, cfg)
    assert (model_cfg.to_dict(), asdict(cfg)) == given  # the run sizes a copy, never the caller's config
    return result


def test_train_writes_a_bundle_that_loads_and_evaluates(tmp_path: Path, maestro_dir: Path, cache: Path) -> None:
    result = _run(tmp_path / "run", maestro_dir, cache)
    assert result.step == 6 and result.best_bits_per_note is not None
    for name in ("best", "last"):
        bundle = load_bundle(tmp_path / "run" / name)
        assert bundle.summary["step"] > 0
        assert "MAESTRO" in (tmp_path / "run" / name / "MODEL_CARD.md").read_text()
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
    proc = subprocess.run([sys.executable, "-m", "comagen", "evaluate", "--checkpoint", str(tmp_path / "run" / "best"),
                           "--data", str(maestro_dir), "--split", "test", "--max-files", "2", "--max-tokens", "300",
                           "--cache", str(cache), "--json"], capture_output=True, text=True, cwd=ROOT, check=True)
    metrics = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in ("nll_per_token", "bits_per_note", "perplexity", "files", "notes", "tokens", "per_composer"):
        assert key in metrics
    assert metrics["files"] == 2 and metrics["bits_per_note"] > 0
    by_type = metrics["bits_per_note_by_type"]
    assert {"Pitch", "Velocity", "Duration", "Position"} <= set(by_type)
    assert sum(by_type.values()) == pytest.approx(metrics["bits_per_note"], rel=1e-6)


def test_stop_and_resume_equals_uninterrupted(tmp_path: Path, maestro_dir: Path, cache: Path) -> None:
    whole = _run(tmp_path / "whole", maestro_dir, cache)
    first = _run(tmp_path / "split", maestro_dir, cache, "stop_after=4")
    assert first.step == 4 and first.stopped == "stop_after"
    second = _run(tmp_path / "split", maestro_dir, cache)
    assert second.step == 6
    assert [round(v, 6) for _, v in second.losses] == [round(v, 6) for _, v in whole.losses]


def test_unknown_config_key_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown"):
        load_run_config(TINY, ["train.learning_rate=0.1"])
    with pytest.raises(ConfigError, match="unknown"):
        load_run_config(TINY, ["model.dimension=8"])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"model": {"arch": "conformer", "widows": [8]}, "train": {}}))
    proc = subprocess.run([sys.executable, "training/train.py", "--config", str(bad)], capture_output=True,
                          text=True, cwd=ROOT)
    assert proc.returncode == 2 and "widows" in proc.stderr and "Traceback" not in proc.stderr


def test_unreadable_checkpoint_is_a_clear_error(tmp_path: Path, maestro_dir: Path, cache: Path) -> None:
    _run(tmp_path / "run", maestro_dir, cache, "stop_after=1", "eval_every=0")
    ckpt = tmp_path / "run" / "last"
    broken = tmp_path / "broken"
    shutil.copytree(ckpt, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="truncated"):
        load_bundle(broken)
    (broken / "model.safetensors").write_text("not weights at all")
    with pytest.raises(CheckpointError):
        load_bundle(broken)
    with pytest.raises(CheckpointError, match="missing"):
        load_bundle(tmp_path)


def test_ddp_two_gloo_processes(tmp_path: Path, maestro_dir: Path) -> None:
    """Both ranks start on an empty cache, so they also prove the cache lock under DDP."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with socket.socket() as sock:  # a free port, so a run right after another cannot collide
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    logs = tmp_path / "logs"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port,
         "--log-dir", str(logs), "--tee", "3",
         "training/train.py", "--config", str(TINY), "--data", str(maestro_dir), "--out", str(tmp_path / "ddp"),
         "--max-steps", "2", "--json", "device=\"cpu\"", f"cache={json.dumps(str(tmp_path / 'cache'))}",
         "eval_every=0"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=300,
    )
    assert proc.returncode == 0, _rank_logs(logs) + proc.stderr[-1500:]
    summary = json.loads(_rank_output(logs, 0, "stdout").strip().splitlines()[-1])
    assert summary["step"] == 2 and summary["tokens"] == 2 * 2 * 2 * 64  # steps x world x batch x seq
    assert load_bundle(tmp_path / "ddp" / "last").summary["step"] == 2


def _rank_output(logs: Path, rank: int, stream: str) -> str:
    files = sorted(logs.glob(f"**/attempt_*/{rank}/{stream}.log"))
    return files[-1].read_text() if files else ""


def _rank_logs(logs: Path) -> str:
    """Each rank's own stderr, which torchrun's summary hides."""
    return "".join(f"--- rank {r} stderr ---\n{_rank_output(logs, r, 'stderr')[-3000:]}\n" for r in (0, 1))


def test_activation_checkpointing_gives_the_same_losses(tmp_path: Path, maestro_dir: Path, cache: Path) -> None:
    plain = _run(tmp_path / "plain", maestro_dir, cache, "stop_after=2", "eval_every=0", "model.dropout=0.0")
    ckpt = _run(tmp_path / "ckpt", maestro_dir, cache, "stop_after=2", "eval_every=0", "model.dropout=0.0",
                "activation_checkpointing=true")
    assert [round(v, 5) for _, v in ckpt.losses] == [round(v, 5) for _, v in plain.losses]


def test_prefetching_loader_workers_give_the_same_losses(tmp_path: Path, maestro_dir: Path, cache: Path) -> None:
    inline = _run(tmp_path / "inline", maestro_dir, cache, "stop_after=3", "eval_every=0", "loader_workers=0")
    workers = _run(tmp_path / "workers", maestro_dir, cache, "stop_after=3", "eval_every=0", "loader_workers=2")
    assert [round(v, 6) for _, v in workers.losses] == [round(v, 6) for _, v in inline.losses]
