"""The app in a real browser (Debian's chromium, headless, driven by Playwright): pick a gallery
prompt, generate a short continuation, wait for the audio (an Ogg file the browser decodes), the MIDI
and WAV downloads and the piano roll; then a corrupt upload shows its error in the page and the next
generation still works."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from app_support import (
    GENERATION_TIMEOUT_MS,
    browser_page,
    download_result,
    pick_gallery_prompt,
    set_number,
    status_starts,
)


@pytest.fixture(scope="module")
def page(shipped_app: str) -> Iterator:
    with browser_page(shipped_app) as page:
        yield page


def _working(page) -> None:
    """The page shows a generation at work. A short piece on the ONNX int8 step can finish sampling
    before the first 0.25 s text frame, so the status may go straight to rendering: either counts."""
    status_starts(page, "Generating", "Rendering")


def test_gallery_prompt_generates_audio_midi_and_roll(page, tmp_path: Path) -> None:
    page.set_viewport_size({"width": 1280, "height": 720})  # a laptop screen: Generate needs no scrolling
    box = page.locator("#generate").bounding_box()
    assert box and box["x"] + box["width"] <= 1280 and box["y"] + box["height"] <= 720
    page.set_viewport_size({"width": 1400, "height": 1800})
    pick_gallery_prompt(page)
    set_number(page, "length (seconds of new music)", 5)
    page.click("#generate")
    _working(page)
    page.wait_for_function("() => (document.querySelector('#tokens-0 textarea')?.value || '').length > 0",
                           timeout=GENERATION_TIMEOUT_MS)  # the token text streams in before the end
    status_starts(page, "Done")
    page.wait_for_selector("#roll-0 img", timeout=30_000)
    midi = download_result(page, "#midi-0 a[href*='.mid']", tmp_path / "download.mid")
    assert midi.read_bytes().startswith(b"MThd")
    wav = download_result(page, "#wav-0 a[href*='.wav']", tmp_path / "download.wav")
    assert wav.read_bytes()[:4] == b"RIFF"
    assert page.get_attribute("#audio-0 a.download-link", "href").endswith(".ogg")
    # the player's waveform shows the length once the browser has decoded the file: 5 s of new music and more
    page.wait_for_function("() => /^0:(0[5-9]|[1-5][0-9])$/"
                           ".test(document.querySelector('#audio-0 #duration')?.innerText)", timeout=30_000)
    assert "tokens/s" in page.inner_text("#stats")
    shot = tmp_path / "app.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000


def test_corrupt_upload_shows_error_and_app_keeps_serving(page, tmp_path: Path) -> None:
    bad = tmp_path / "broken.mid"
    bad.write_bytes(b"MThd\x00\x00\x00\x06not really midi")
    page.set_input_files("#upload input[type=file]", str(bad))
    page.wait_for_function("() => document.querySelector('#prompt-note')?.innerText.includes('Upload refused')",
                           timeout=30_000)
    assert "broken.mid: the MIDI data is corrupt" in page.inner_text("#prompt-note")
    set_number(page, "length (seconds of new music)", 3)
    page.click("#generate")
    _working(page)
    status_starts(page, "Done")
    assert "tokens/s" in page.inner_text("#stats")
