"""The loop the audio runs and the piano-roll run share: steps until a limit (steps, minutes, a
stop-after count), evaluation every `eval_every` steps that keeps `best` and counts patience, `last`
saves every `save_every`, and a resume that restores the counters exactly. A subclass says what a
step, an evaluation, a save and the end of a run are.

The token runs (`run.Run`) keep their own loop: it also evaluates on a token budget and samples.
"""

from __future__ import annotations

import logging
import time

import torch

from comagen.training.config import TrainConfig
from comagen.training.progress import TrainingBar
from comagen.training.run import TrainResult

log = logging.getLogger("comagen.training")


class LoopedRun:
    """Counters, patience and the loop; `_train_step`, `_evaluate_and_save`, `save` and `_finish` per run."""

    cfg: TrainConfig

    def __init__(self) -> None:
        self.step, self.elapsed, self.best, self.bad_evals = 0, 0.0, None, 0
        self.history: list[tuple[int, float]] = []

    # ---- subclass hooks
    def _train_step(self) -> float:
        """One optimizer step; its mean loss."""
        raise NotImplementedError

    def _evaluate_and_save(self, bar: TrainingBar) -> bool:
        """Validation (through `_keep_best`); True when patience has run out."""
        raise NotImplementedError

    def _after_step(self, loss: float, bar: TrainingBar) -> None:
        """What a run shows or logs after each step."""

    def _finish(self, stopped: str, bar: TrainingBar) -> TrainResult:
        raise NotImplementedError

    def save(self, name: str) -> None:
        raise NotImplementedError

    # ---- shared parts
    def _say(self, message: str, bar: TrainingBar | None = None) -> None:
        log.info(message)
        if self.cfg.progress:
            print(message) if bar is None else bar.write(message)

    def _seconds(self) -> float:
        return self.elapsed + time.perf_counter() - self.t_start

    def _keep_best(self, value: float, shown: str, bar: TrainingBar) -> bool:
        """Save `best` when `value` (lower is better) improves on it, else count a bad evaluation; say
        `shown` and the best so far; True when patience has run out."""
        if self.best is None or value < self.best:
            self.best, self.bad_evals = value, 0
            self.save("best")
        else:
            self.bad_evals += 1
        self._say(f"step {self.step}: {shown} (best {self.best:.4f})", bar)
        return bool(self.cfg.patience) and self.bad_evals >= self.cfg.patience

    def _counters(self) -> dict:
        """The trainer state every run saves besides its optimizer, scheduler and RNG."""
        return {"step": self.step, "elapsed": self._seconds(), "bad_evals": self.bad_evals,
                "best": -1.0 if self.best is None else self.best,
                "history": torch.tensor(self.history, dtype=torch.float64).reshape(-1, 2)}

    def _restore_counters(self, state: dict) -> None:
        self.step, self.elapsed = int(state["step"]), float(state["elapsed"])
        self.best = float(state["best"]) if state["best"] >= 0 else None
        self.bad_evals = int(state["bad_evals"])
        self.history = [(int(s), float(v)) for s, v in state["history"].tolist()]

    def loop(self) -> TrainResult:
        cfg = self.cfg
        bar = TrainingBar(self.step, cfg.max_steps, cfg.max_minutes, disable=not cfg.progress)
        stopped, first_step = "max_steps", self.step
        self.t_start = time.perf_counter()
        self.model.train()
        while self.step < cfg.max_steps:
            if limit := bar.limit_reached(self.step - first_step, cfg.stop_after):
                stopped = limit
                break
            loss = self._train_step()
            bar.step_done(self.step)
            self._after_step(loss, bar)
            if (cfg.eval_every and self.step % cfg.eval_every == 0 or self.step == cfg.max_steps) \
                    and self._evaluate_and_save(bar):
                stopped = "early_stopping"
                break
            if cfg.save_every and self.step % cfg.save_every == 0:
                self.save("last")
        bar.end(stopped)
        return self._finish(stopped, bar)
