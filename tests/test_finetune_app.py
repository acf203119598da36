"""The app offers fine-tuned bundles: COMAGEN_CHECKPOINTS folders (and runs/finetuned/) are listed
beside the shipped ones, and in a real browser the fine-tuned bundle is in the checkpoint menu and
loads when picked."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from app_support import browser_page
from finetune_support import BASE, Tuned, tuned_bundle

import studio
from studio.appserver import serve

SHIPPED_ROOT = BASE.parent


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> Tuned:
    return tuned_bundle(tmp_path_factory.mktemp("finetune"))


def test_extra_folders_list_their_bundles_without_clashing_names(tuned: Tuned, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    clash = tmp_path / "elsewhere" / "default"  # a fine-tuned bundle that took a shipped name
    shutil.copytree(tuned.out, clash)
    (tmp_path / "elsewhere" / ".default.finetune-x").mkdir()  # a run's temp folder is never listed
    monkeypatch.setenv("COMAGEN_CHECKPOINTS", os.pathsep.join([str(tuned.out.parent), str(clash.parent), ""]))
    more = studio.env_checkpoint_folders()
    assert more == [tuned.out.parent, clash.parent]
    found = studio.find_checkpoints(SHIPPED_ROOT, more=[*more, tuned.out, tmp_path / "missing"])
    assert found["default"] == SHIPPED_ROOT / "default"
    assert found["my-style"] == tuned.out
    assert found[str(clash)] == clash
    assert list(found.values()).count(tuned.out) == 1  # the folder and the bundle itself: listed once
    assert len(found) == len(set(found.values()))


def test_browser_offers_and_loads_the_finetuned_bundle(tuned: Tuned, tmp_path: Path) -> None:
    env = {"COMAGEN_CHECKPOINTS": str(tuned.out.parent)}
    with serve(BASE, tmp_path / "app.log", env=env) as server, browser_page(server.url) as page:
        assert "default: conformer" in page.inner_text("body")
        assert "my-style: conformer" not in page.inner_text("body")
        menu = page.get_by_label("checkpoint", exact=True)
        menu.click()
        page.get_by_role("option", name="my-style").click()
        page.wait_for_function("() => document.body.innerText.includes('my-style: conformer')", timeout=60_000)
        assert "my-style: conformer, 3.7M parameters" in page.inner_text("body")
