"""The piano-roll model in the app, without a browser: it is in the model menu, Generate (with a
form and variations), Stop and Continue run it through the same jobs as the token models, its
results play and download, and what it cannot do (infill, duet) is refused in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import symusic
import torch

import studio
from comagen.bundle.pianoroll import FrameBundle, save_pianoroll
from comagen.errors import ComagenError
from comagen.generation.settings import Settings
from comagen.model import ModelConfig, build_model
from comagen.music.frames import FrameSettings
from comagen.music.midi import SECONDS_PER_BAR
from studio.catalog import needs_tokens
from studio.infill import infill_take

ELISE = 'L. van Beethoven: Bagatelle in A minor, WoO 59 "Für Elise"'


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (small, untrained) piano-roll bundle whose keys sound often enough to make notes."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="pianoroll", position="sinusoidal", dim=32, depth=2, heads=2, ff_mult=2,
                                    dropout=0.0, max_seq_len=64))
    model.set_key_prior(torch.full((128,), 0.08))
    root = tmp_path_factory.mktemp("ckpts")
    save_pianoroll(root / "pianoroll", model, FrameSettings(), summary={"best_val_nats_per_frame": 3.5},
                   card="tiny")
    return root / "pianoroll"


@pytest.fixture(scope="module")
def bundle(folder: Path) -> FrameBundle:
    return studio.Checkpoints({"pianoroll": folder}).get("pianoroll")


@pytest.fixture(scope="module")
def gallery() -> dict[str, studio.GalleryItem]:
    return studio.build_gallery()


def test_the_menu_lists_it_with_no_composer_and_no_windows(folder: Path, bundle: FrameBundle) -> None:
    assert studio.find_checkpoints(folder.parent) == {"pianoroll": folder}
    assert isinstance(bundle, FrameBundle) and len(bundle.composers) == 1  # the app hides composer and guidance
    assert not any(s["visible"] for s in studio.window_sliders(bundle))
    assert "pianoroll" in studio.describe_checkpoint(bundle) and "3.50 nats/frame" in studio.describe_checkpoint(bundle)


def test_generate_with_a_form_and_variations_plays_and_downloads(bundle: FrameBundle, gallery: dict) -> None:
    prompt, name = studio.resolve_prompt(bundle, None, gallery, ELISE, 4)
    req = studio.app_request(bundle, Settings(seconds=4, variations=2, seed=3, form="AABA"), False)
    final = list(studio.stream(bundle, prompt, req, name, live="on"))[-1]
    prompt_notes = bundle.tokenizer.decode_ids(prompt.ids).note_num()
    assert final.take is not None and len(final.results) == 2 and final.status == "Done."
    for r, ids in zip(final.results, final.take.rows, strict=True):
        assert ids and r.roll.ndim == 3 and r.attention.ndim == 3  # its own heads
        score = symusic.Score.from_midi(r.midi.read_bytes())
        assert score.note_num() > prompt_notes  # the prompt's notes and new ones
    assert final.take.rows[0] != final.take.rows[1]  # two draws, not one twice
    assert final.take.stats["music_seconds"] == 4 * req.section_bars * SECONDS_PER_BAR  # the whole form: 4 sections


def test_stop_keeps_what_was_made_and_continue_extends_it(bundle: FrameBundle, gallery: dict) -> None:
    prompt, name = studio.resolve_prompt(bundle, None, gallery, ELISE, 4)
    registry = studio.Registry()
    req = studio.app_request(bundle, Settings(seconds=studio.MAX_SECONDS), False)
    frames = []
    for frame in studio.stream(bundle, prompt, req, name, registry=registry, key="me", live="text"):
        frames.append(frame)
        if len(frames) == 2:
            assert registry.stop("me")
    final = frames[-1]
    assert final.status.startswith("Stopped") and final.take.rows[0]
    assert final.take.stats["music_seconds"] < studio.MAX_SECONDS
    again, _ = studio.continue_prompt(bundle, [final.take], 0)
    assert again.ids[:len(prompt.ids)] == prompt.ids and len(again.ids) > len(prompt.ids)
    more = list(studio.stream(bundle, again, studio.app_request(bundle, Settings(seconds=2), False), name,
                              live="off"))[-1]
    assert more.take.rows[0] and more.take.prompt.ids == again.ids


def test_infill_and_duet_are_refused_in_one_line(bundle: FrameBundle, gallery: dict) -> None:
    prompt, name = studio.resolve_prompt(bundle, None, gallery, ELISE, 4)
    take = studio.Take(prompt, [[]], 0, 0, None, name)
    with pytest.raises(ComagenError, match="Infill needs a token model"):
        infill_take(bundle, [take], 0, 0, 2, 1, Settings())
    with pytest.raises(ComagenError, match="duet needs a token model"):
        needs_tokens(bundle, "The duet")
