"""A long piece in a real browser (Debian's chromium, headless, Playwright): the length control
offers up to the app's 300 s, a 300 s request streams, Stop ends it early, and the page shows what
was made (piano roll, audio, MIDI, stats)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from app_support import GENERATION_TIMEOUT_MS, browser_page, set_number, status_starts

import studio

LENGTH = "length (seconds of new music)"


@pytest.fixture(scope="module")
def page(shipped_app: str) -> Iterator:
    with browser_page(shipped_app) as page:
        yield page


def test_length_goes_to_five_minutes_and_stop_keeps_the_take(page) -> None:
    slider = page.get_by_label(f"range slider for {LENGTH}")
    assert slider.get_attribute("max") == str(studio.MAX_SECONDS) == "300"
    set_number(page, "keep the first N seconds", 4)
    set_number(page, LENGTH, studio.MAX_SECONDS)
    page.click("#generate")
    page.wait_for_function("() => (document.querySelector('#status')?.innerText || '').includes('of 300 s of music')",
                           timeout=GENERATION_TIMEOUT_MS)  # the 300 s request reached the engine and streams
    page.wait_for_function("() => (document.querySelector('#tokens-0 textarea')?.value || '').length > 0",
                           timeout=GENERATION_TIMEOUT_MS)
    page.click("#stop")
    status_starts(page, "Stopped")
    page.wait_for_selector("#roll-0 img", timeout=30_000)
    page.wait_for_selector("#audio-0 audio[src], #audio-0 [src*='.wav']", state="attached", timeout=30_000)
    page.locator("#midi-0 a[href*='.mid']").first.wait_for(timeout=30_000)
    stats = page.inner_text("#stats")
    assert "(stopped early)" in stats and "tokens/s" in stats
