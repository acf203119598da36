"""The shipped piano-roll model in a real browser, on the app server the other browser tests share:
picked from the model menu, its composer, min-p and leans controls hidden, it generates a piece that
plays and downloads."""

from __future__ import annotations

from pathlib import Path

import pytest
from app_support import ROOT, browser_page, download_result, pick_gallery_prompt, set_number, status_starts

SHIPPED = ROOT / "assets" / "checkpoints" / "pianoroll"


@pytest.mark.skipif(not (SHIPPED / "model.safetensors").is_file(), reason="no shipped piano-roll checkpoint")
def test_the_pianoroll_bundle_generates_in_the_browser(shipped_app: str, tmp_path: Path) -> None:
    with browser_page(shipped_app) as page:
        page.get_by_label("checkpoint", exact=True).click()
        page.get_by_role("option", name="pianoroll").click()
        page.wait_for_function("() => document.body.innerText.includes('pianoroll: pianoroll')", timeout=60_000)
        page.get_by_text("composer, attention windows, form").click()
        page.get_by_label("musical form").wait_for(timeout=10_000)
        assert page.get_by_label("composer (a MAESTRO name, e.g. Chopin)").is_hidden()
        assert page.get_by_label("min-p (0 = off)").is_hidden()  # it reads temperature, top-k and top-p only
        assert page.get_by_text("keep to the prompt: dynamics").is_hidden()  # the leans' accordion
        pick_gallery_prompt(page)
        set_number(page, "length (seconds of new music)", 5)
        page.click("#generate")
        status_starts(page, "Done")
        page.wait_for_selector("#roll-0 img", timeout=30_000)
        midi = download_result(page, "#midi-0 a[href*='.mid']", tmp_path / "pianoroll.mid")
        assert midi.read_bytes().startswith(b"MThd")
        assert "piano-roll frames" in page.inner_text("#stats")
