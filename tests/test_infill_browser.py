"""Infill in a real browser (Debian's chromium, headless, Playwright): generate a few seconds after a
shipped prompt, set a span over the result, press Infill, and get a new result with its piano roll
(the span in its own colour), audio and MIDI."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from app_support import (
    browser_page,
    download_result,
    pick_gallery_prompt,
    set_number,
    status_starts,
)
from matplotlib.colors import to_rgb
from PIL import Image

from comagen.music.midi import load_score
from comagen.render.pianoroll import INFILL_COLOUR

TIMEOUT_MS = 180_000


@pytest.fixture(scope="module")
def page(shipped_app: str) -> Iterator:
    with browser_page(shipped_app, height=2200) as page:
        yield page


def _status(page, prefix: str) -> None:
    status_starts(page, prefix, timeout_ms=TIMEOUT_MS)


def _green_pixels(page) -> int:
    """Pixels of the result's piano roll in the infill colour (notes drawn at full strength)."""
    data = page.locator("#roll-0 img").first.screenshot()
    rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)
    return int((np.abs(rgb - np.array(to_rgb(INFILL_COLOUR)) * 255).sum(-1) < 40).sum())


def test_infill_a_span_of_a_result(page, tmp_path: Path) -> None:
    pick_gallery_prompt(page)
    set_number(page, "length (seconds of new music)", 6)
    page.click("#generate")
    _status(page, "Done")
    page.wait_for_selector("#roll-0 img", timeout=30_000)
    assert _green_pixels(page) == 0  # a plain result has no infilled span
    end = page.get_by_label("number input for infill end (s)")
    page.wait_for_function("(el) => Number(el.max) > 2", arg=end.element_handle(), timeout=30_000)  # follows the piece
    set_number(page, "infill start (s)", 2)
    set_number(page, "infill end (s)", 6)
    set_number(page, "infill candidates", 2)
    before = page.locator("#roll-0 img").first.get_attribute("src")
    page.click("#infill")
    page.wait_for_function("() => document.querySelector('#stats')?.innerText.includes('Infilled')",
                           timeout=TIMEOUT_MS)
    assert "Infilled 2-6 s (2 bars" in page.inner_text("#stats")
    assert page.inner_text("#status").strip().startswith("Done")
    midi = download_result(page, "#midi-0 a[href*='infill']", tmp_path / "infilled.mid")
    assert load_score(midi).note_num() > 0
    page.wait_for_function("(old) => { const img = document.querySelector('#roll-0 img'); "
                           "return img && img.src !== old && img.complete; }", arg=before, timeout=30_000)
    assert _green_pixels(page) > 0  # the new span is drawn in its own colour
