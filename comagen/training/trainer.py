"""Starting a training run: its folder proven writable, held against a second run, and its log.

The run itself is `run.Run`; its settings `config.TrainConfig`. `<out>/train.log` is the run's
server log: what it did and, when it fails, the traceback, while the terminal keeps the one line
that `run_for_user` prints.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from comagen.errors import ConfigError
from comagen.files import folder_lock
from comagen.logs import FORMAT
from comagen.model import ModelConfig
from comagen.training.config import TrainConfig
from comagen.training.pianoroll_run import PianoRollRun
from comagen.training.run import Run, TrainResult
from comagen.training.run_data import TrainData

log = logging.getLogger("comagen.training")


def train(model_cfg: ModelConfig, cfg: TrainConfig, *, resume: bool = True,
          data: TrainData | None = None) -> TrainResult:
    """Train (or resume) a model as configured; writes `<out>/last`, `<out>/best`, TensorBoard logs
    and `<out>/train.log`. Neither config is changed: the run sizes a copy of `model_cfg`.

    The writing process holds `<out>`'s lock for the whole run, so a second run aimed at the same
    folder stops at once with a clear error instead of overwriting the first one's checkpoints.
    """
    if int(os.environ.get("RANK", "0")) != 0:
        return Run(model_cfg, cfg, data).set_up(resume).loop()
    out = _writable_folder(Path(cfg.out))
    with folder_lock(out, wait=False) as held:
        if not held:
            raise ConfigError(f"{out}: another training run is writing there; stop it or pick another --out")
        with run_log(out / "train.log"):
            if model_cfg.arch == "vqvae" or cfg.codec:
                from comagen.training.melformer_run import MelformerRun
                from comagen.training.vqvae_run import VQVAERun

                return (MelformerRun if cfg.codec else VQVAERun)(model_cfg, cfg).set_up(resume).loop()
            if model_cfg.arch == "pianoroll":
                if data is not None:
                    raise ConfigError("the pianoroll trains on MAESTRO's frames, not on given token pieces")
                return PianoRollRun(model_cfg, cfg).set_up(resume).loop()
            return Run(model_cfg, cfg, data).set_up(resume).loop()


def _writable_folder(out: Path) -> Path:
    """`out`, created and proven writable, or one clear line saying why not."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=out).close()
    except OSError as exc:
        raise ConfigError(f"cannot write to --out {out}: {exc.strerror or exc}") from None
    return out


@contextmanager
def run_log(path: Path) -> Iterator[None]:
    """comagen.training's records (INFO and up) appended to `path` while the block runs, and the
    traceback of whatever ends it early; the exception goes on to the caller unchanged."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.setLevel(logging.INFO)
    level = log.level
    if not log.isEnabledFor(logging.INFO):
        log.setLevel(logging.INFO)
    log.addHandler(handler)
    try:
        yield
    except KeyboardInterrupt:
        log.warning("interrupted")
        raise
    except Exception:
        log.exception("training failed")
        raise
    finally:
        log.removeHandler(handler)
        handler.close()
        log.setLevel(level)
