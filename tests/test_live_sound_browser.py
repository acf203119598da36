"""Live sound in a real browser (Debian's chromium, headless, allowed to play without a click) on the
real app: the synth and its soundfont come from the app's own host and make sound; a Generate sounds
its notes in the page before the WAV arrives; without the synth's library the page says so once and
still generates."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlparse

import pytest
from app_support import GENERATION_TIMEOUT_MS, browser_page, pick_gallery_prompt, set_number, status_starts

# From a quiet synth, counts its noteOn events before and after the first variation's WAV link is on the page.
WATCH = """() => {
  window.comagenSynth.resetStats();
  const w = window.__live = { before: 0, after: 0 };
  const wav = () => document.querySelector("#wav-0 a[href*='.wav']");
  window.comagenSynth.onEvent((e) => { if (e.type === "noteOn") wav() ? w.after++ : w.before++; });
}"""


@pytest.fixture(scope="module")
def page(shipped_app: str) -> Iterator:
    with browser_page(shipped_app) as page:
        yield page


def test_the_synth_comes_from_the_apps_own_host_and_sounds(page, shipped_app: str) -> None:
    assert page.evaluate("() => window.comagenSynth.ready") is True, page.evaluate("() => window.comagenSynth.message")
    fetched = page.evaluate("() => performance.getEntriesByType('resource').map((e) => e.name)")
    assert {urlparse(u).netloc for u in fetched} == {urlparse(shipped_app).netloc}
    assert any(u.endswith("/comagen/web/soundfont.sf2") for u in fetched)
    assert any("/comagen/web/lib/js-synthesizer/" in u for u in fetched)
    page.evaluate("() => { window.comagenSynth.resetStats(); window.comagenSynth.noteOn(60, 100); }")
    page.wait_for_function("() => window.comagenSynth.stats().level > 0.001", timeout=30_000)
    page.evaluate("() => window.comagenSynth.noteOff(60)")
    assert page.evaluate("() => window.comagenSynth.stats()")["noteOn"] == 1


def test_a_generation_sounds_in_the_page_before_its_wav_arrives(page) -> None:
    pick_gallery_prompt(page)
    set_number(page, "length (seconds of new music)", 6)
    page.evaluate(WATCH)
    page.click("#generate")
    status_starts(page, "Done")
    page.wait_for_selector("#wav-0 a[href*='.wav']", state="attached", timeout=30_000)
    # the notes come at the latest with the "Rendering" frame, and rendering 6 s of audio, the MIDI and
    # the figures takes far longer than the page's 25 ms poll of the notes
    counts = page.evaluate("() => window.__live")
    assert counts["before"] > 0
    page.wait_for_function("() => window.comagenSynth.stats().level > 0.001", timeout=30_000)


def test_without_the_library_the_page_says_so_once_and_still_generates(page, shipped_app: str) -> None:
    bare = page.context.browser.new_page(viewport={"width": 1400, "height": 1800})
    try:
        bare.route("**/comagen/web/lib/**", lambda route: route.fulfill(status=404, body="not installed"))
        bare.goto(shipped_app)
        bare.wait_for_selector("#generate", timeout=60_000)
        assert bare.evaluate("() => window.comagenSynth.ready") is False
        assert bare.evaluate("() => window.comagenSynth.available") is False
        notes = bare.locator("#live-sound-note")
        assert notes.count() == 1 and notes.inner_text().startswith("live sound unavailable: ")
        bare.evaluate("() => { window.comagenSynth.noteOn(60, 100); window.comagenSynth.stopAll(); }")
        pick_gallery_prompt(bare)
        set_number(bare, "length (seconds of new music)", 3)
        bare.click("#generate")
        status_starts(bare, "Done", timeout_ms=GENERATION_TIMEOUT_MS)
        bare.wait_for_selector("#wav-0 a[href*='.wav']", state="attached", timeout=30_000)
        assert bare.locator("#live-sound-note").count() == 1
    finally:
        bare.close()
