"""Learning curves from TensorBoard logs, as one matplotlib figure (training loss + validation)."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def read_scalars(log_dir: str | Path, tag: str) -> list[tuple[int, float]]:
    """(step, value) pairs of one scalar tag from a TensorBoard log folder."""
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    if tag not in acc.Tags().get("scalars", []):
        return []
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def _smooth(values: list[float]) -> list[float]:
    """Exponential moving average, lighter when there are few points."""
    weight = 0.9 if len(values) > 200 else 0.6
    out, last = [], values[0] if values else 0.0
    for v in values:
        last = weight * last + (1 - weight) * v
        out.append(last)
    return out


def curves_figure(runs: dict[str, Path], x: str = "tokens", tokens_per_step: dict[str, int] | None = None) -> Figure:
    """Two panels: smoothed training loss and validation bits per note, one line per run.

    With x="tokens", steps are scaled by each run's tokens per step so runs of different batch
    sizes line up on the data they saw.
    """
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    loss_ax, val_ax = fig.subplots(1, 2)
    for name, log_dir in runs.items():
        scale = (tokens_per_step or {}).get(name, 1) if x == "tokens" else 1
        loss = read_scalars(log_dir, "train/loss")
        val = read_scalars(log_dir, "val/bits_per_note")
        if loss:
            loss_ax.plot([s * scale for s, _ in loss], _smooth([v for _, v in loss]), label=name)
        if val:
            val_ax.plot([s * scale for s, _ in val], [v for _, v in val], marker="o", label=name)
    unit = "training tokens" if x == "tokens" and tokens_per_step else "step"
    loss_ax.set(title="training loss (nats/token, smoothed)", xlabel=unit)
    val_ax.set(title="validation bits per note", xlabel=unit)
    for ax in (loss_ax, val_ax):
        ax.grid(alpha=0.3)
        ax.legend()
    return fig
