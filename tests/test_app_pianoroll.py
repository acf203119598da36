"""The piano-roll model in the app, without a browser: it is in the model menu, Generate (with a
form and variations), Stop and Continue run it through the same jobs as the token models, its
results play and download, and what it cannot do (infill, duet) is refused in one line."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import symusic
import torch

import studio
from comagen.bundle.pianoroll import FrameBundle, save_pianoroll
from comagen.errors import ComagenError
from comagen.generation.frame_session import FrameSession
from comagen.generation.settings import Settings
from comagen.model import ModelConfig, build_model
from comagen.music.frames import FrameSettings
from comagen.music.midi import SECONDS_PER_BAR
from studio.catalog import needs_tokens
from studio.infill import infill_take
from studio.jobs import Job

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


class StopAtFrames(studio.Registry):
    """A registry that stops each job once its session has made `frames` frames, watched from a thread:
    what a stop keeps is then about that many frames on any machine (a stop pressed at the second live
    frame kept ~180 s of a random tiny model's music, near the length cap and Continue's limit)."""

    def __init__(self, frames: int) -> None:
        super().__init__()
        self.frames = frames

    def put(self, key: str, job: Job) -> None:
        super().put(key, job)

        def watch() -> None:
            while job.session.steps < self.frames and not job.done:
                time.sleep(0.002)
            self.stop(key)

        threading.Thread(target=watch, daemon=True).start()


def test_stop_keeps_what_was_made_and_continue_extends_it(bundle: FrameBundle, gallery: dict) -> None:
    prompt, name = studio.resolve_prompt(bundle, None, gallery, ELISE, 4)
    req = studio.app_request(bundle, Settings(seconds=studio.MAX_SECONDS), False)
    final = list(studio.stream(bundle, prompt, req, name, registry=StopAtFrames(160), key="me", live="text"))[-1]
    assert final.status.startswith("Stopped") and final.take.rows[0]
    assert final.take.stats["music_seconds"] < studio.MAX_SECONDS / 4
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


def test_controls_it_does_not_read_are_hidden_when_it_is_picked(folder: Path, bundle: FrameBundle,
                                                                  gallery: dict) -> None:
    import app  # gradio's page; no browser: the checkpoint menu's own handler is called

    hidden = studio.hidden_settings(bundle)
    assert {"min_p", "key_strength", "dynamics_strength", "density_strength", "pitch_temperature"} <= hidden
    assert not hidden & {"temperature", "top_k", "top_p"}  # what FrameSession reads stays
    shipped = studio.find_checkpoints()
    token_name = next(n for n, f in shipped.items() if (f / "tokenizer.json").is_file())
    checkpoints = studio.Checkpoints({"pianoroll": folder, token_name: shipped[token_name]})
    assert studio.hidden_settings(checkpoints.get(token_name)) == frozenset()
    demo = app.build_demo(checkpoints, token_name, gallery)
    switch = next(f.fn for f in demo.fns.values() if getattr(f.fn, "__name__", "") == "switch")
    for name, visible in (("pianoroll", False), (token_name, True)):
        updates = switch(name)  # component -> its update (a component carrying the new visibility)
        assert next(u for c, u in updates.items() if type(c).__name__ == "Accordion").visible is visible
        leans = [u for c, u in updates.items()
                 if "strength" in str(getattr(c, "label", "")) or "factor" in str(getattr(c, "label", ""))]
        assert len(leans) == 8 and all(u.visible is visible for u in leans)
        kept = [u for c, u in updates.items() if str(getattr(c, "label", "")).startswith(("temperature", "top-"))]
        assert len(kept) == 3 and all(u.visible is True for u in kept)


def test_new_notes_take_the_prompts_velocities_and_a_held_key_goes_on(bundle: FrameBundle, gallery: dict) -> None:
    prompt, _ = studio.resolve_prompt(bundle, None, gallery, ELISE, 4)
    session = FrameSession(bundle, prompt, studio.app_request(bundle, Settings(seconds=2), False))
    session.prompt_frames[-1, 50] = 1  # the prompt holds key 50 across its last bar line
    frame = np.zeros((1, 128), dtype=np.float32)
    frame[0, [50, 60, 64, 67]] = 1
    session.made = [frame] * 4 + [np.zeros((1, 128), dtype=np.float32)] * 4
    first = session.score(0, with_prompt=False).tracks[0].notes.numpy()
    prompt_velocities = set(bundle.tokenizer.decode_ids(prompt.ids).tracks[0].notes.numpy()["velocity"].tolist())
    assert set(first["velocity"].tolist()) <= prompt_velocities  # drawn from the prompt's, not one value
    assert sorted(first["pitch"].tolist()) == [60, 64, 67]  # key 50 goes on from the prompt: not struck again
    session.made = session.made + [frame] * 2  # the take grows: the notes made so far keep their draws
    again = session.score(0, with_prompt=False).tracks[0].notes.numpy()
    assert again["velocity"][:len(first["velocity"])].tolist() == first["velocity"].tolist()
