"""Shared by the app tests: a checkpoint to serve (conftest's `shipped_app` serves it once), a headless
chromium page on the app (Debian's chromium, driven by Playwright), and the page's common steps."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "assets" / "checkpoints" / "default"
APP_START_TIMEOUT_S = 400  # the app starts in 1-3 minutes while other work loads the 2 cores
MAESTRO = Path(os.environ.get("COMAGEN_MAESTRO_DIR", ROOT.parent / "shared" / "data" / "maestro"))
CHROMIUM = os.environ.get("COMAGEN_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--autoplay-policy=no-user-gesture-required"]  # the page's live sound starts without a click
GENERATION_TIMEOUT_MS = 120_000


_TRAINED: dict[str, Path] = {}


def app_checkpoint(tmp: Path) -> Path:
    """The shipped checkpoint when it exists, else a tiny one trained here once per test session."""
    if (SHIPPED / "model.safetensors").is_file():
        return SHIPPED
    if "tiny" in _TRAINED:
        return _TRAINED["tiny"]
    out = tmp / "ckpt"
    subprocess.run([sys.executable, "training/train.py", "--config", "tests/configs/tiny.json", "--data",
                    str(MAESTRO), "--out", str(out), "--max-steps", "20", "--fresh", f"cache={tmp / 'cache'}",
                    "eval_every=20"], cwd=ROOT, check=True, capture_output=True, timeout=300)
    _TRAINED["tiny"] = out / "best"
    return out / "best"


@contextmanager
def browser_page(url: str, height: int = 1800) -> Iterator:
    """A chromium page on `url` once the app's Generate button is there; the browser always closes."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"no chromium at {CHROMIUM} (scripts/setup.sh installs Debian's chromium)")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": height}, accept_downloads=True)
            page.goto(url)
            page.wait_for_selector("#generate", timeout=60_000)
            yield page
        finally:
            browser.close()


def set_number(page, label: str, value: float) -> None:  # noqa: ANN001 - a playwright Page
    box = page.get_by_label(f"number input for {label}")
    box.fill(str(value))
    box.press("Enter")


def status_starts(page, *prefixes: str, timeout_ms: int = GENERATION_TIMEOUT_MS) -> None:  # noqa: ANN001
    """Wait until the status line starts with one of `prefixes`."""
    checks = " || ".join(f"s.startsWith('{p}')" for p in prefixes)
    page.wait_for_function(f"() => {{ const s = document.querySelector('#status')?.innerText.trim() || ''; "
                           f"return {checks}; }}", timeout=timeout_ms)


def pick_gallery_prompt(page, name: str = "Für Elise", file: str = "beethoven_fur_elise",  # noqa: ANN001
                        keep_seconds: float = 4) -> None:
    """Choose a shipped prompt from the gallery by typing its name, wait until the page names its
    file, and keep its first `keep_seconds`."""
    gallery = page.get_by_label("gallery (type to search)")
    gallery.click()
    gallery.fill(name)
    page.get_by_role("option", name=name).first.click()
    page.wait_for_function(f"() => document.querySelector('#prompt-note')?.innerText.includes('{file}')")
    set_number(page, "keep the first N seconds", keep_seconds)


def download_result(page, link_selector: str, path: Path) -> Path:  # noqa: ANN001 - a playwright Page
    """Once the result's audio is on the page, click its download link and save the file to `path`."""
    page.wait_for_selector("#audio-0 audio[src], #audio-0 [src*='.wav']", state="attached", timeout=30_000)
    link = page.locator(link_selector).first
    link.wait_for(timeout=30_000)
    with page.expect_download() as info:
        link.click()
    info.value.save_as(path)
    return path


def stopped_after_two_frames(studio, bundle, prompt, request, name: str):  # noqa: ANN001, ANN201
    """Stream a take, press stop at its second frame; the last frame and the registry it ran under."""
    registry = studio.Registry()
    frames = []
    for frame in studio.stream(bundle, prompt, request, name, registry=registry, key="me", live="text"):
        frames.append(frame)
        if len(frames) == 2:
            assert registry.stop("me")
    return frames[-1], registry
