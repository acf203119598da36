"""The continuation benchmark as a figure: per statistic, the floor, each model setting and the ceiling.

Closeness is a ratio of gaps, which hides the values it comes from; a panel per statistic shows the
raw distances from the prompt (how far key, pace, loudness, register, silence and note statistics
move away from the prompt) so an overshoot (closer to the prompt than the pianist) reads as one.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

UNITS = {"key": "key correlation with the prompt", "density": "|log2 ratio| of notes per second",
         "dynamics": "mean velocity gap", "register": "mean pitch gap (semitones)",
         "silence": "gap in share of silence", "overlap": "note-statistics overlap with the prompt"}


def closeness_figure(rows: list[dict], stats: tuple[str, ...], title: str, out: Path) -> Path:
    """Write one bar panel per statistic: rows[0] is the ceiling, rows[1] the floor, the rest settings
    (each annotated with its closeness `c_<stat>`)."""
    ceiling, floor, *models = rows
    bars = [floor, *models, ceiling]
    colours = ["#bbbbbb", *[f"C{i}" for i in range(len(models))], "#333333"]
    fig = Figure(figsize=(3.1 * len(stats), 3.6 + 0.22 * len(bars)), layout="constrained")
    for ax, stat in zip(fig.subplots(1, len(stats)), stats, strict=True):
        values = [r[stat] for r in bars]
        ax.bar(range(len(bars)), values, color=colours)
        for i, r in enumerate(models, start=1):
            ax.annotate(f"{r[f'c_{stat}']:.2f}", (i, values[i]), ha="center", va="bottom", fontsize=8)
        ax.set_title(stat)
        ax.set_ylabel(UNITS.get(stat, stat), fontsize=8)
        ax.set_xticks([])
    handles = [fig.axes[0].patches[i] for i in range(len(bars))]
    labels = ["another piece (floor)", *[f"{r['setting']} (mean closeness {r['c_mean']:.2f})" for r in models],
              "the pianist's next bars (ceiling)"]
    fig.legend(handles, labels, loc="outside lower center", fontsize=8, ncols=1)
    fig.suptitle(f"{title}: distance from the prompt (numbers: closeness, 1 = the pianist, 0 = another piece)",
                 fontsize=10)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    return out
