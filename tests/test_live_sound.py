"""Live sound without a browser: the notes of a streaming continuation, each once and as the whole
piece decodes them; the stream's frames that carry them to the page; the routes that serve the synth."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

import studio
from comagen.bundle.checkpoint import Bundle
from comagen.generation.prompt import Prompt
from comagen.generation.request import Request
from comagen.generation.session import Session
from comagen.generation.settings import Settings
from comagen.music.notestream import NoteStream
from comagen.render.soundfont import pretty_midi_soundfont
from studio import web


def _new_notes(bundle: Bundle, prompt: Prompt, ids: list[int]) -> list[tuple]:
    """The continuation's notes as the whole piece decodes them, from where it starts."""
    score = bundle.tokenizer.decode_ids(prompt.ids + ids).to("second")
    return sorted((round(n.time - prompt.seconds, 4), n.pitch, n.velocity, round(n.duration, 4))
                  for t in score.tracks for n in t.notes if n.time >= prompt.seconds - 1e-6)


@pytest.mark.parametrize("from_nothing", [False, True])
def test_note_stream_gives_every_new_note_once_in_time_order(default_bundle: Bundle, default_prompt: Prompt,
                                                             from_nothing: bool) -> None:
    prompt = Prompt.empty() if from_nothing else default_prompt
    session = Session(default_bundle, prompt, Request(max_tokens=1500, seconds=30, seed=3))
    for _ in session:
        pass
    ids = list(session.snapshot().rows[0])
    expected = _new_notes(default_bundle, prompt, ids)
    assert len(expected) > 50
    for chunks in range(3):  # polls at irregular points: mid-chord, mid-note, on bar lines
        stream, got, k = NoteStream(default_bundle.tokenizer, prompt.ids, prompt.seconds), [], 0
        rng = random.Random(chunks)
        while k < len(ids):
            k = min(len(ids), k + rng.randint(1, 40))
            got += [(n.start, n.pitch, n.velocity, n.duration) for n in stream.update(ids[:k])]
        assert stream.update(ids) == []
        assert sorted(got) == expected
        assert [g[0] for g in got] == sorted(g[0] for g in got)


def test_stream_frames_carry_the_first_variations_notes_as_a_growing_text(default_bundle: Bundle,
                                                                           default_prompt: Prompt) -> None:
    req = studio.app_request(default_bundle, Settings(seconds=6, variations=2, seed=1), False)
    frames = list(studio.stream(default_bundle, default_prompt, req, "x", live="text", sound=True))
    texts = [f.notes for f in frames if f.notes is not None]
    assert texts and texts[0].startswith("take ")
    assert all(b.startswith(a) for a, b in zip(texts, texts[1:], strict=False))  # it only grows
    lines = [tuple(float(x) for x in line.split()) for line in texts[-1].splitlines()[1:]]
    expected = _new_notes(default_bundle, default_prompt, frames[-1].take.rows[0])
    assert sorted(lines) == [tuple(float(x) for x in n) for n in expected]
    quiet = list(studio.stream(default_bundle, default_prompt, req, "x", live="text"))
    assert all(f.notes is None for f in quiet)


def test_web_routes_serve_the_synth_its_library_and_a_small_soundfont() -> None:
    client = TestClient(Starlette(routes=web.web_routes()))
    assert "window.comagenSynth" in client.get(f"{web.PREFIX}/static/synth.js").text
    lib = client.get(f"{web.PREFIX}/lib/js-synthesizer/externals/libfluidsynth-2.4.6.js")
    assert lib.status_code == 200, "run scripts/setup.sh (npm ci in studio/browser)"
    soundfont = client.get(f"{web.PREFIX}/soundfont.sf2")
    assert soundfont.content[:4] == b"RIFF" and len(soundfont.content) == pretty_midi_soundfont().stat().st_size
    head = web.head_html()
    assert f'src="{web.PREFIX}/static/synth.js"' in head and f'src="{web.PREFIX}/static/live.js"' in head


def test_without_the_files_the_routes_answer_404_and_live_sound_can_be_left_out(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    client = TestClient(Starlette(routes=web.web_routes(tmp_path / "nowhere")))
    assert client.get(f"{web.PREFIX}/static/synth.js").status_code == 404
    assert client.get(f"{web.PREFIX}/lib/js-synthesizer/dist/js-synthesizer.min.js").status_code == 404
    monkeypatch.setenv("COMAGEN_LIVE_SOUND", "off")
    assert web.head_html() == ""
