"""Piano-roll figure of a prompt and its continuation.

The figure is built on a bare ``matplotlib.figure.Figure`` with the Agg canvas, never through
pyplot, so a server drawing many rolls from several threads keeps no global figure state and
needs no display.
"""

from __future__ import annotations

import io

import numpy as np
import symusic
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PolyCollection
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Patch

PROMPT_COLOUR = "#1f5fbf"  # blue
CONTINUATION_COLOUR = "#e8590c"  # orange: far from blue in hue and for colour-blind readers
INFILL_COLOUR = "#0ca678"  # teal-green: a regenerated span, between dotted lines as well as by hue
NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
BLACK_KEYS = {1, 3, 6, 8, 10}
PITCH_MARGIN = 2  # semitones shown above and below the used range
MIN_SHADE = 0.3  # the softest note keeps 30% of its colour, so it stays visible


def note_name(pitch: int) -> str:
    """Scientific pitch name of a MIDI number (60 -> C4)."""
    return f"{NOTE_NAMES[pitch % 12]}{pitch // 12 - 1}"


def _note_arrays(score: symusic.Score) -> dict[str, np.ndarray]:
    """All notes of all tracks in seconds, as numpy columns."""
    seconds = score.to("second")
    columns = [track.notes.numpy() for track in seconds.tracks if len(track.notes)]
    if not columns:
        return {key: np.zeros(0) for key in ("time", "duration", "pitch", "velocity")}
    return {key: np.concatenate([c[key] for c in columns]) for key in columns[0]}


def _shaded(colour: str, velocity: np.ndarray) -> np.ndarray:
    """Opaque RGB colours that blend from near-white (soft) to ``colour`` (loud)."""
    strength = MIN_SHADE + (1.0 - MIN_SHADE) * np.clip(velocity, 0, 127)[:, None] / 127.0
    return 1.0 - strength * (1.0 - np.asarray(to_rgb(colour))[None, :])


def _pitch_ticks(low: int, high: int) -> list[int]:
    """Label every key on a narrow roll, Cs and Gs on a medium one, only Cs on a wide one."""
    span = high - low
    if span <= 24:
        return list(range(low, high + 1))
    classes = {0, 7} if span <= 48 else {0}
    return [p for p in range(low, high + 1) if p % 12 in classes]


def piano_roll_figure(
    score: symusic.Score,
    split_seconds: float | None = None,
    title: str = "",
    size: tuple[float, float] = (12.0, 4.5),
    span: tuple[float, float] | None = None,
) -> Figure:
    """Draw ``score`` as a piano roll: seconds across, note names up, velocity as shade.

    Notes starting before ``split_seconds`` are the prompt (blue), the rest the continuation
    (orange), with a dashed line at the split; without a split every note is drawn as prompt.
    An empty score gives an empty roll that says so, so callers never special-case it. Notes
    starting inside ``span`` (an infilled stretch, seconds) are green, between dotted lines.
    """
    fig = Figure(figsize=size, dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_title(title)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("pitch")
    if split_seconds is not None:
        ax.axvline(split_seconds, color="0.15", ls="--", lw=1.2, zorder=3)
    for edge in span or ():
        ax.axvline(edge, color=INFILL_COLOUR, ls=":", lw=1.5, zorder=3)
    notes = _note_arrays(score)
    if not len(notes["pitch"]):
        ax.set_xlim(0.0, max(split_seconds or 0.0, 1.0))
        ax.set_ylim(60 - 12, 60 + 12)
        ax.set_yticks([48, 60, 72], [note_name(p) for p in (48, 60, 72)])
        ax.text(0.5, 0.5, "no notes", transform=ax.transAxes, ha="center", va="center",
                fontsize=14, color="0.4")
        return fig

    start, duration = notes["time"], notes["duration"]
    pitch = notes["pitch"].astype(int)
    low = max(int(pitch.min()) - PITCH_MARGIN, 0)
    high = min(int(pitch.max()) + PITCH_MARGIN, 127)
    end = float((start + duration).max())
    if split_seconds is not None:
        end = max(end, split_seconds)

    for row in range(low, high + 1):
        if row % 12 in BLACK_KEYS:
            ax.axhspan(row - 0.5, row + 0.5, color="0.93", lw=0, zorder=0)
        elif row % 12 == 0:
            ax.axhline(row - 0.5, color="0.75", lw=0.6, zorder=0)

    is_prompt = np.ones(len(pitch), bool) if split_seconds is None else start < split_seconds
    colours = np.where(
        is_prompt[:, None],
        _shaded(PROMPT_COLOUR, notes["velocity"]),
        _shaded(CONTINUATION_COLOUR, notes["velocity"]),
    )
    in_span = np.zeros(len(pitch), bool) if span is None else (start >= span[0] - 1e-6) & (start < span[1] - 1e-6)
    colours[in_span] = _shaded(INFILL_COLOUR, notes["velocity"][in_span])
    left, right = start, start + np.maximum(duration, 1e-3)
    bottom, top = pitch - 0.4, pitch + 0.4
    boxes = np.stack(
        [np.stack([left, bottom], 1), np.stack([left, top], 1),
         np.stack([right, top], 1), np.stack([right, bottom], 1)], axis=1,
    )
    edges = np.where(is_prompt[:, None], to_rgb(PROMPT_COLOUR), to_rgb(CONTINUATION_COLOUR))
    edges[in_span] = to_rgb(INFILL_COLOUR)
    ax.add_collection(PolyCollection(boxes, facecolors=colours, edgecolors=edges,
                                     linewidths=0.4, zorder=2))

    ax.set_xlim(0.0, end * 1.01 + 0.05)
    ax.set_ylim(low - 0.5, high + 0.5)
    ticks = _pitch_ticks(low, high)
    ax.set_yticks(ticks, [note_name(p) for p in ticks])
    if split_seconds is not None:
        ax.legend(
            handles=[Patch(color=PROMPT_COLOUR, label="prompt"),
                     Patch(color=CONTINUATION_COLOUR, label="continuation"),
                     *([Patch(color=INFILL_COLOUR, label="infilled")] if span else []),
                     Patch(facecolor="white", edgecolor="0.5", label="paler = softer")],
            loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False,
        )
    return fig


def figure_png_bytes(fig: Figure, dpi: int = 100) -> bytes:
    """PNG bytes of a figure, for downloads and for tests that look at pixels."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()
