"""Piano-roll and attention figures drawn from real data, and the shipped prompt files."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest
import symusic
import torch
from matplotlib.image import imread

from comagen.render.attention_figure import attention_figure
from comagen.render.pianoroll import (
    CONTINUATION_COLOUR,
    PROMPT_COLOUR,
    figure_png_bytes,
    note_name,
    piano_roll_figure,
)

PROMPTS = Path(__file__).resolve().parents[1] / "assets" / "prompts"


@pytest.fixture(scope="module")
def excerpt(validation_files: list[Path]) -> symusic.Score:
    """About 12 s of a real validation performance, moved to start at time 0."""
    score = symusic.Score(validation_files[1]).to("second")
    start = score.start() + 3.0
    return score.clip(start, start + 12.0, clip_end=True).shift_time(-start)


def save_png(fig: object, path: Path) -> np.ndarray:
    path.write_bytes(figure_png_bytes(fig))
    assert path.stat().st_size > 10_000
    return imread(path)[..., :3]


def pixels_near(image: np.ndarray, colour: str, tolerance: float = 0.12) -> int:
    """How many pixels are close to ``colour`` or to a paler (softer-velocity) shade of it."""
    rgb = np.array([int(colour[i: i + 2], 16) / 255 for i in (1, 3, 5)])
    # Shades lie on the line from white to the colour: project and measure the distance.
    direction = rgb - 1.0
    t = np.clip(((image - 1.0) @ direction) / (direction @ direction), 0.3, 1.0)
    distance = np.linalg.norm(image - (1.0 + t[..., None] * direction), axis=-1)
    return int((distance < tolerance).sum())


def test_note_names() -> None:
    assert [note_name(p) for p in (21, 60, 61, 108)] == ["A0", "C4", "C#4", "C8"]


def test_piano_roll_of_real_excerpt(excerpt: symusic.Score, tmp_path: Path) -> None:
    fig = piano_roll_figure(excerpt, split_seconds=5.0, title="prompt + continuation")
    image = save_png(fig, tmp_path / "roll.png")
    assert image.shape[0] > 300 and image.shape[1] > 800
    assert pixels_near(image, PROMPT_COLOUR) > 500
    assert pixels_near(image, CONTINUATION_COLOUR) > 500
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels and all(label[0] in "CDEFGAB" for label in labels)


def test_piano_roll_of_empty_score(tmp_path: Path) -> None:
    image = save_png(piano_roll_figure(symusic.Score(480), split_seconds=2.0), tmp_path / "e.png")
    assert pixels_near(image, CONTINUATION_COLOUR) == 0


def test_attention_figure_from_softmax_capture(excerpt: symusic.Score, tmp_path: Path) -> None:
    windows, layers, heads, queries = [16, 64], 3, 2, 20
    generator = torch.Generator().manual_seed(0)
    probs = [
        [torch.randn(heads, queries, w, generator=generator).softmax(-1) for w in windows]
        for _ in range(layers)
    ]
    capture = types.SimpleNamespace(
        windows=windows, probs=probs, global_layers=[1],
        scale_weights=torch.randn(layers, len(windows), generator=generator).softmax(-1),
    )
    pitches = excerpt.tracks[0].notes.numpy()["pitch"][:queries]
    fig = attention_figure(capture, token_labels=[f"Pitch_{p}" for p in pitches])
    image = save_png(fig, tmp_path / "attention.png")
    assert image.std() > 0.1
    texts = {t.get_text() for ax in fig.axes for t in ax.texts}
    assert f"{capture.scale_weights[0, 0].item():.2f}" in texts
    assert len([ax for ax in fig.axes if ax.images]) == layers * len(windows) + 1
    assert "layer 1 (+global)" in {t.get_text() for ax in fig.axes for t in ax.get_yticklabels()}


@pytest.mark.parametrize("path", sorted(PROMPTS.glob("*.mid")), ids=lambda p: p.name)
def test_shipped_prompt_is_playable_piano(path: Path) -> None:
    score = symusic.Score(path)
    assert len(score.tracks) == 1 and score.tracks[0].program == 0
    pitches = score.tracks[0].notes.numpy()["pitch"]
    assert len(pitches) >= 20 and pitches.min() >= 21 and pitches.max() <= 108
    assert 8.0 <= score.to("second").end() <= 20.0


def test_prompts_are_shipped() -> None:
    assert len(list(PROMPTS.glob("*.mid"))) >= 5
