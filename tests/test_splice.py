"""Edits keep the user's own notes, and infill samples under every setting a generation does.

On real MAESTRO files with sustain pedal and a small random model: an infilled span and a
continuation of an uploaded prompt are the user's file with only the regenerated notes replaced,
every other note, pedal and controller to the tick, in the library, the written MIDI and the app's
results; composer and guidance change an infill, and guidance without a composer changes nothing.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import symusic
from conftest import small_conformer_bundle
from splice_support import assert_continued, assert_infilled, rows

import studio
from comagen.bundle.checkpoint import Bundle
from comagen.generation.infill import infill, piece_ids
from comagen.generation.prompt import continuation_score, load_prompt
from comagen.generation.request import Request
from comagen.generation.session import generate
from comagen.generation.settings import Settings
from comagen.music.midi import load_original, midi_bytes, piano
from comagen.music.splice import added_notes
from studio.infill import infill_take

SPAN = (8.0, 10.0)  # bar 4: a random model writes up to 512 tokens a bar


@pytest.fixture(scope="module")
def bundle() -> Bundle:
    return small_conformer_bundle(["Bach", "Chopin"], widen=True)


@pytest.fixture(scope="module")
def pedalled(validation_files: list[Path]) -> Path:
    """The shortest validation performance with sustain-pedal (CC64) events."""
    return next(f for f in validation_files if len(symusic.Score(f).tracks[0].pedals) > 0)


def read_back(score: symusic.Score) -> symusic.Score:
    """The score as a MIDI file makes it: written and read again."""
    return symusic.Score.from_midi(midi_bytes(score))


def test_an_infill_keeps_everything_of_the_file_outside_the_span(bundle: Bundle, pedalled: Path) -> None:
    original = load_original(pedalled)
    result = infill(bundle, piano(original), *SPAN, Request(seed=1), candidates=2, suffix_bars=1)
    new = assert_infilled(original, read_back(result.into(original)), *SPAN)
    assert len(new) == bundle.tokenizer.vocab.notes(result.candidates[result.chosen].ids)


def test_a_continuation_keeps_the_prompt_as_the_file_has_it(bundle: Bundle, pedalled: Path, tmp_path: Path) -> None:
    """A file with a tempo map of its own: the prompt part is the file's, to the tick, and the new notes
    sit where the tokens put them in seconds, within a tick."""
    timed = symusic.Score(pedalled)
    timed.tempos = [symusic.Tempo(0, 90.0), symusic.Tempo(8 * timed.ticks_per_quarter, 137.0)]
    path = tmp_path / "retimed.mid"
    path.write_bytes(timed.dumps_midi())
    original = load_original(path)
    prompt = load_prompt(bundle.tokenizer, path, seconds=8)
    ids = generate(bundle, prompt, Request(max_tokens=200, seed=2)).generated()
    result = read_back(continuation_score(bundle.tokenizer, prompt, ids))
    assert len(assert_continued(original, result, prompt.seconds)) == bundle.tokenizer.vocab.notes(ids) > 0
    got = np.sort(result.to("second").tracks[1].notes.numpy()["time"])
    want = np.sort(added_notes(bundle.tokenizer, prompt.ids, ids).to("second").tracks[0].notes.numpy()["time"])
    np.testing.assert_allclose(got, want, atol=60.0 / 90.0 / original.ticks_per_quarter)  # a tick, at the slower tempo


def test_composer_and_guidance_change_an_infill(bundle: Bundle, pedalled: Path) -> None:
    piece = piece_ids(bundle, piano(load_original(pedalled)))

    def spans(**kw: object) -> list[list[int]]:
        result = infill(bundle, piece, *SPAN, Request(seed=4, **kw), candidates=1, suffix_bars=1)
        return [c.ids for c in result.candidates]

    plain = spans()
    assert spans(guidance=3.0) == plain  # guidance needs a composer: no composer, no change
    assert spans(composer=2, guidance=0.0) == plain  # guidance 0 is the unconditional model
    chopin = spans(composer=2)
    assert chopin != plain
    assert spans(composer=2, guidance=3.0) != chopin


def test_the_app_shows_plays_and_offers_the_spliced_file(bundle: Bundle, pedalled: Path, tmp_path: Path) -> None:
    """Generate from an upload, then Infill and Continue: each result's MIDI (and its roll and audio, made
    from the same score) keeps the upload, then the result before, outside what was made."""
    upload = tmp_path / "mine.mid"
    upload.write_bytes(pedalled.read_bytes())
    prompt, name = studio.resolve_prompt(bundle, upload, {}, None, 8)
    request = studio.app_request(bundle, Settings(seconds=4, seed=1), False)
    final = list(studio.stream(bundle, prompt, request, name, live="off"))[-1]
    first = symusic.Score.from_midi(final.results[0].midi.read_bytes())
    assert_continued(load_original(upload), first, prompt.seconds)

    take, rendered, _ = infill_take(bundle, [final.take], 0, 4.0, 6.0, 1, Settings(seed=3), False)
    second = symusic.Score.from_midi(rendered[0].midi.read_bytes())
    assert_infilled(first, second, 4.0, 6.0)

    again, _ = studio.continue_prompt(bundle, [final.take, take], 0)
    last = list(studio.stream(bundle, again, request, name, live="off"))[-1]
    third = symusic.Score.from_midi(last.results[0].midi.read_bytes())
    for kind in ("notes", "pedals", "controls"):
        assert np.array_equal(rows(getattr(third.tracks[0], kind)), rows(getattr(second.tracks[0], kind)))
    struck = [Counter(map(tuple, rows(t.notes)[:, 1:])) for t in (second.tracks[1], third.tracks[1])]  # no length
    assert not struck[0] - struck[1] and struck[1].total() > struck[0].total()  # the notes made before, and more
