"""The experimental Audio tab in a real Chromium, on the app server the other browser tests share (#25): the
Compose tab's prompt, rendered by FluidSynth, is continued for 4 beats by the shipped melformer; the player,
the spectrogram and the WAV (prompt plus 2 s) arrive; a file that is not a WAV is one line, and the tab goes on."""

from __future__ import annotations

from pathlib import Path

import pytest
import soundfile
from app_support import GENERATION_TIMEOUT_MS, browser_page, pick_gallery_prompt, set_number

from studio import audio_tab

pytestmark = pytest.mark.skipif(not (audio_tab.AUDIO_CHECKPOINT / "melformer.safetensors").is_file(),
                                reason="no shipped melformer checkpoint")


def _status_starts(page, prefix: str) -> None:  # noqa: ANN001 - a playwright Page
    page.wait_for_function(f"() => (document.querySelector('#audio-status')?.innerText || '').trim()"
                           f".startsWith({prefix!r})", timeout=GENERATION_TIMEOUT_MS)


def test_the_audio_tab_continues_the_prompt(shipped_app: str, tmp_path: Path) -> None:
    with browser_page(shipped_app) as page:
        pick_gallery_prompt(page, keep_seconds=4)
        page.get_by_role("tab", name="Audio (experimental)").click()
        set_number(page, "beats to add", 4)
        page.click("#audio-go")
        _status_starts(page, "Done: 4 beats")
        page.wait_for_selector("#audio-spectrogram img", timeout=30_000)
        page.wait_for_selector("#audio-out audio[src], #audio-out [src*='.wav']", state="attached", timeout=30_000)
        link = page.locator("#audio-wav a[href*='.wav']").first
        link.wait_for(timeout=30_000)
        with page.expect_download() as info:
            link.click()
        info.value.save_as(tmp_path / "continued.wav")
        samples, rate = soundfile.read(str(tmp_path / "continued.wav"))
        assert rate == audio_tab.RATE and abs(len(samples) - 6 * rate) <= 4  # 4 s of prompt, 4 beats at 120 bpm

        (tmp_path / "text.wav").write_text("not audio")
        page.set_input_files("#audio-upload input[type=file]", str(tmp_path / "text.wav"))
        page.wait_for_function("() => document.querySelector('#audio-upload')?.innerText.includes('text.wav')")
        page.click("#audio-go")
        _status_starts(page, "Error:")  # the page shows the markdown's bold as bold, not as asterisks
        assert "not a readable WAV file" in page.inner_text("#audio-status")
