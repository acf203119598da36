"""The Play tab in a real Chromium against the shared real app: keys pressed on the computer keyboard
sound in the page synth and reach the model; a pause hands the turn over and the answer sounds;
a key cuts it; the Web MIDI handler plays notes too; Finish shows the take (both parts); a second
tab is told a duet is already playing."""

from __future__ import annotations

import time

from app_support import browser_page, status_starts


def open_play(page) -> None:  # noqa: ANN001 - a playwright Page
    page.get_by_role("tab", name="Play").click()
    page.wait_for_selector("#comagen-play .pk-row")
    page.evaluate("window.comagenSynth.ready")
    page.click("#play-start")
    page.wait_for_function("comagenPlay.state.log.some((e) => e.type === 'ready')", timeout=180_000)


def test_a_duet_in_the_page(shipped_app: str) -> None:
    with browser_page(shipped_app) as page:
        open_play(page)
        before = page.evaluate("comagenSynth.stats().noteOn")
        for key in "zcbm,":  # C E G B C' on the lower row
            page.keyboard.down(key)
            time.sleep(0.12)
            page.keyboard.up(key)
        assert page.evaluate("comagenSynth.stats().noteOn") >= before + 5  # the player hears their keys
        page.evaluate("comagenPlay.midiMessage([0x90, 72, 100]); comagenPlay.midiMessage([0x80, 72, 0])")
        assert page.evaluate("comagenPlay.state.log.filter((e) => e.type === 'keyOn').length") == 6
        page.wait_for_function("comagenPlay.state.turns.length === 1 && "
                               "comagenPlay.state.turns[0].firstSound !== undefined", timeout=120_000)
        assert page.evaluate("comagenPlay.state.turn") == "model"
        # the answer's start was prepared while the pause ran and came ahead of the turn, timed for it
        assert page.evaluate("comagenPlay.state.log.some((e) => e.type === 'note' && e.tentative)")
        played = page.evaluate("comagenSynth.stats().noteOn")
        assert played > before + 6  # the answer sounded
        page.keyboard.down("q")  # cut in: the answer (16 bars) is still playing
        assert page.evaluate("comagenPlay.state.turn") == "player"
        assert page.evaluate("comagenPlay.state.queue.length") == 0
        page.keyboard.up("q")
        page.click("#play-finish")
        status_starts(page, "Your duet")
        notes = page.evaluate("comagenPlay.state.log.filter((e) => e.type === 'take')[0].notes")
        assert notes >= 7  # the six keys, the cut-in key and what the model played before it
        assert page.locator("#midi-0 a[href*='.mid']").count() == 1  # the take downloads like any result
        page.get_by_role("tab", name="Compose").click()
        page.click("#continue")  # and continues like any result
        status_starts(page, "Done")
        second = another_tab(page, shipped_app)  # the first duet has finished: a new one may start
        open_play(second)


def another_tab(page, url: str):  # noqa: ANN001, ANN201 - playwright Pages
    """A second tab in the same browser, on the app."""
    tab = page.context.browser.new_page()
    tab.goto(url)
    tab.wait_for_selector("#generate", timeout=60_000)
    return tab


def test_a_second_tab_is_told_a_duet_is_playing(shipped_app: str) -> None:
    with browser_page(shipped_app) as first:
        open_play(first)
        second = another_tab(first, shipped_app)
        second.get_by_role("tab", name="Play").click()
        second.click("#play-start")
        second.wait_for_function("document.querySelector('#play-status').textContent.includes('another duet')",
                                 timeout=60_000)
        first.keyboard.down("z")  # the first duet plays on
        first.keyboard.up("z")
        assert first.evaluate("comagenPlay.state.ws !== null")
