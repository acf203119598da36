"""Piano roll of a prompt and its continuation: one layout (`Roll`), drawn as a figure or as a raster.

The figure is built on a bare ``matplotlib.figure.Figure`` with the Agg canvas, never through
pyplot, so a server drawing many rolls from several threads keeps no global figure state and
needs no display.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import symusic
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PolyCollection
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from comagen.music.midi import MODEL_TRACK, PLAYER_TRACK

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


EMPTY_RANGE = (48, 72)  # the pitch rows of a roll with no notes: two octaves around middle C
BLACK_KEY_GREY = 0.93  # background of black-key rows, in both renderers
LIVE_SPLIT_GREY = 40  # the raster's split line (0-255)


@dataclass(frozen=True)
class Roll:
    """A score laid out for drawing: its notes in seconds, each note's colour, the rows and seconds to show.

    Both renderers draw a `Roll` (the figure as vector boxes, the live view as a raster), so the two
    always agree on range, colours and shading; only the medium differs."""

    start: np.ndarray  # (n,) onset, seconds
    stop: np.ndarray  # (n,) end, seconds (at least 1 ms after the onset)
    pitch: np.ndarray  # (n,) MIDI number
    base: np.ndarray  # (n, 3) RGB 0-1: prompt, continuation or infilled
    fill: np.ndarray  # (n, 3) RGB 0-1: `base` paled by velocity
    low: int  # lowest and highest pitch row shown
    high: int
    end: float  # the last note's end or the split, whichever is later


def _note_arrays(score: symusic.Score) -> dict[str, np.ndarray]:
    """All notes of all tracks in seconds, as numpy columns; "model" marks a duet's model part."""
    seconds = score.to("second")
    columns = [{**track.notes.numpy(), "model": np.full(len(track.notes), track.name == MODEL_TRACK)}
               for track in seconds.tracks if len(track.notes)]
    if not columns:
        return {key: np.zeros(0) for key in ("time", "duration", "pitch", "velocity", "model")}
    return {key: np.concatenate([c[key] for c in columns]) for key in columns[0]}


def _shaded(base: np.ndarray, velocity: np.ndarray) -> np.ndarray:
    """Opaque RGB colours that blend from near-white (soft) to ``base`` (loud)."""
    strength = MIN_SHADE + (1.0 - MIN_SHADE) * np.clip(velocity, 0, 127)[:, None] / 127.0
    return 1.0 - strength * (1.0 - base)


def layout_roll(score: symusic.Score, split_seconds: float | None = None,
                span: tuple[float, float] | None = None) -> Roll:
    """The `Roll` of ``score``: notes starting before ``split_seconds`` are the prompt (blue), the rest
    the continuation (orange); without a split every note is prompt but a duet's model part, which is
    orange too. Notes starting inside ``span`` (an infilled stretch, seconds) are green."""
    notes = _note_arrays(score)
    start, pitch = notes["time"].astype(float), notes["pitch"].astype(int)
    stop = start + np.maximum(notes["duration"], 1e-3)
    is_prompt = ~notes["model"].astype(bool) if split_seconds is None else start < split_seconds
    base = np.where(is_prompt[:, None], to_rgb(PROMPT_COLOUR), to_rgb(CONTINUATION_COLOUR))
    if span is not None:
        base[(start >= span[0] - 1e-6) & (start < span[1] - 1e-6)] = to_rgb(INFILL_COLOUR)
    if len(pitch):
        low, high = max(int(pitch.min()) - PITCH_MARGIN, 0), min(int(pitch.max()) + PITCH_MARGIN, 127)
        end = float((start + notes["duration"]).max())
    else:
        (low, high), end = EMPTY_RANGE, 0.0
    end = max(end, split_seconds or 0.0)
    return Roll(start, stop, pitch, base, _shaded(base, notes["velocity"]), low, high, end)


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
    """Draw ``score`` as a piano roll figure: seconds across, note names up, velocity as shade.

    Colours as in `layout_roll`, with a dashed line at the split and dotted lines around ``span``.
    An empty score gives an empty roll that says so, so callers never special-case it.
    """
    roll = layout_roll(score, split_seconds, span)
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
    if not len(roll.pitch):
        ax.set_xlim(0.0, max(roll.end, 1.0))
        ax.set_ylim(*EMPTY_RANGE)
        ticks = [EMPTY_RANGE[0], (EMPTY_RANGE[0] + EMPTY_RANGE[1]) // 2, EMPTY_RANGE[1]]
        ax.set_yticks(ticks, [note_name(p) for p in ticks])
        ax.text(0.5, 0.5, "no notes", transform=ax.transAxes, ha="center", va="center", fontsize=14, color="0.4")
        return fig
    _draw_notes(ax, roll)
    if split_seconds is not None:
        _legend(ax, span, ("prompt", "continuation"))
    elif any(t.name == MODEL_TRACK for t in score.tracks):
        _legend(ax, span, (PLAYER_TRACK.lower(), MODEL_TRACK.lower()))
    return fig


def _draw_notes(ax: Axes, roll: Roll) -> None:
    """Key rows (black keys grey, a line under each C), one box per note, and the axes' range."""
    for row in range(roll.low, roll.high + 1):
        if row % 12 in BLACK_KEYS:
            ax.axhspan(row - 0.5, row + 0.5, color=str(BLACK_KEY_GREY), lw=0, zorder=0)
        elif row % 12 == 0:
            ax.axhline(row - 0.5, color="0.75", lw=0.6, zorder=0)
    left, right, bottom, top = roll.start, roll.stop, roll.pitch - 0.4, roll.pitch + 0.4
    boxes = np.stack([np.stack([left, bottom], 1), np.stack([left, top], 1),
                      np.stack([right, top], 1), np.stack([right, bottom], 1)], axis=1)
    ax.add_collection(PolyCollection(boxes, facecolors=roll.fill, edgecolors=roll.base, linewidths=0.4, zorder=2))
    ax.set_xlim(0.0, roll.end * 1.01 + 0.05)
    ax.set_ylim(roll.low - 0.5, roll.high + 0.5)
    ticks = _pitch_ticks(roll.low, roll.high)
    ax.set_yticks(ticks, [note_name(p) for p in ticks])


def _legend(ax: Axes, span: tuple[float, float] | None, labels: tuple[str, str]) -> None:
    """What the colours mean, beside the roll (`labels`: the blue and the orange notes)."""
    ax.legend(
        handles=[Patch(color=PROMPT_COLOUR, label=labels[0]),
                 Patch(color=CONTINUATION_COLOUR, label=labels[1]),
                 *([Patch(color=INFILL_COLOUR, label="infilled")] if span else []),
                 Patch(facecolor="white", edgecolor="0.5", label="paler = softer")],
        loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False,
    )


def piano_roll_image(score: symusic.Score, split_seconds: float | None, *, width: int, row_px: int,
                     span: tuple[float, float] | None = None) -> np.ndarray:
    """The same roll as an RGB raster (uint8, ``row_px`` pixels a key, ``width`` across), for views
    redrawn while a piece streams: milliseconds, where a figure takes a large share of a second on a
    busy CPU. No axes or legend; the split is a dark column."""
    roll = layout_roll(score, split_seconds, span)
    image = np.full((roll.high - roll.low + 1, width, 3), 255, np.uint8)
    image[[p - roll.low for p in range(roll.low, roll.high + 1) if p % 12 in BLACK_KEYS]] = int(255 * BLACK_KEY_GREY)
    scale = (width - 1) / (max(roll.end, 1.0) * 1.02)
    if split_seconds is not None:
        image[:, int(split_seconds * scale)] = LIVE_SPLIT_GREY
    x0 = (roll.start * scale).astype(int)
    x1 = np.minimum(np.maximum((roll.stop * scale).astype(int), x0 + 1), width)
    lengths = x1 - x0
    runs = np.repeat(np.cumsum(lengths) - lengths, lengths)  # where each note's run of pixels begins
    columns = np.repeat(x0, lengths) + np.arange(int(lengths.sum())) - runs
    image[np.repeat(roll.high - roll.pitch, lengths), columns] = np.repeat(roll.fill * 255, lengths, axis=0)
    return np.repeat(image, row_px, axis=0)


def figure_png_bytes(fig: Figure, dpi: int = 100) -> bytes:
    """PNG bytes of a figure, for downloads and for tests that look at pixels."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()
