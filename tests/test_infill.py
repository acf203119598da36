"""Infilling on real MAESTRO files with the shipped `default` checkpoint: the span is replaced, every
note outside it is kept, the kept candidate is the one the following bars fit best, bad spans are
one clear error, and the command line writes the input file with only the span replaced."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import symusic
from splice_support import assert_infilled

from comagen.bundle.checkpoint import Bundle, load_bundle
from comagen.errors import ConfigError
from comagen.generation.infill import (
    InfillError,
    InfillResult,
    infill,
    left_context,
    piece_ids,
    scored_suffix,
    suffix_bits,
)
from comagen.generation.request import Request
from comagen.music.grammar import RemiGrammar
from comagen.music.midi import load_original, load_score, midi_bytes

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "assets" / "checkpoints" / "default"
START, END = 4.0, 8.0  # bars 2 and 3 of the piece


@pytest.fixture(scope="module")
def bundle() -> Bundle:
    return load_bundle(DEFAULT)


@pytest.fixture(scope="module")
def piece(bundle: Bundle, validation_files: list[Path]) -> list[int]:
    return piece_ids(bundle, load_score(validation_files[0]))


@pytest.fixture(scope="module")
def result(bundle: Bundle, piece: list[int]) -> InfillResult:
    return infill(bundle, piece, START + 0.3, END - 0.2, Request(seed=0), candidates=3, suffix_bars=2)


def notes(score: symusic.Score) -> np.ndarray:
    """(onset tick, pitch, duration, velocity) of every note, sorted."""
    cols = [t.notes.numpy() for t in score.tracks if len(t.notes)]
    rows = np.concatenate([np.stack([c["time"], c["pitch"], c["duration"], c["velocity"]], 1) for c in cols])
    return rows[np.lexsort(rows.T[::-1])]


def test_the_span_snaps_to_bar_lines_and_decodes_to_midi(result: InfillResult) -> None:
    assert result.seconds == (START, END)
    again = load_score(midi_bytes(result.score))
    assert again.note_num() == result.score.note_num() > 0
    span = notes(result.score)
    bar = 4 * result.score.ticks_per_quarter
    assert result.summary()["span_notes"] == int(((span[:, 0] >= 2 * bar) & (span[:, 0] < 4 * bar)).sum())


def test_notes_outside_the_span_are_untouched(bundle: Bundle, piece: list[int], result: InfillResult) -> None:
    before, after = notes(bundle.tokenizer.decode_ids(piece)), notes(result.score)
    bar = 4 * result.score.ticks_per_quarter

    def outside(rows: np.ndarray) -> np.ndarray:
        return rows[(rows[:, 0] < 2 * bar) | (rows[:, 0] >= 4 * bar)]

    assert len(outside(before)) > 0
    np.testing.assert_array_equal(outside(before), outside(after))
    inside = notes(bundle.tokenizer.decode_ids(result.candidates[result.chosen].ids))
    assert len(after) - len(outside(after)) == len(inside)


def test_the_kept_candidate_is_the_best_scoring_one(bundle: Bundle, result: InfillResult) -> None:
    bits = [c.bits_per_note for c in result.candidates]
    assert len(bits) == 3 and len(set(bits)) == 3
    assert result.chosen == int(np.argmin(bits))
    grammar = RemiGrammar(bundle.tokenizer)
    context = left_context(grammar, bundle.tokenizer.bos_id, result.span.before, bundle.config.max_seq_len)
    suffix = scored_suffix(grammar, result.span.after, 2)
    for c in result.candidates:  # the streamed scores equal a full forward pass over context + span + suffix
        assert c.suffix_bits == pytest.approx(suffix_bits(bundle, context, c.ids, suffix), abs=0.05)
    kept = result.span.before + result.candidates[result.chosen].ids + result.span.after
    assert result.ids == kept


@pytest.mark.parametrize(("start", "end", "message"), [
    (8.0, 8.0, "must end after it starts"),
    (9.0, 4.0, "must end after it starts"),
    (-4.0, 4.0, "outside the piece"),
    (4.0, 1e6, "outside the piece"),
    (4.2, 4.9, "shorter than a bar"),
    (float("nan"), 4.0, "numbers of seconds"),
])
def test_bad_spans_are_one_clear_error(bundle: Bundle, piece: list[int], start: float, end: float,
                                       message: str) -> None:
    with pytest.raises(InfillError, match=message):
        infill(bundle, piece, start, end)


def test_a_span_with_nothing_after_it_is_refused(bundle: Bundle, piece: list[int]) -> None:
    bars = sum(t == RemiGrammar(bundle.tokenizer).bar_id for t in piece)
    with pytest.raises(InfillError, match="nothing follows the span"):
        infill(bundle, piece, (bars - 2) * 2.0, bars * 2.0)
    with pytest.raises(ConfigError, match="candidates"):
        infill(bundle, piece, START, END, candidates=0)


def test_the_command_line_infills_a_train_file(train_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "infilled.mid"
    base = [sys.executable, "-m", "comagen", "infill", "--checkpoint", str(DEFAULT), "--midi", str(train_file)]
    proc = subprocess.run([*base, "--start", "20", "--end", "24", "--candidates", "2", "--suffix-bars", "2", "--seed",
                           "3", "--key-strength", "1", "--out", str(out), "--json"], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["start_s"] == 20.0 and summary["end_s"] == 24.0 and summary["candidates"] == 2
    assert summary["chosen"] == int(np.argmin(summary["bits_per_note"]))
    new = assert_infilled(load_original(train_file), load_original(out), 20.0, 24.0)  # the file, the span replaced
    assert len(new) == summary["span_notes"] > 0
    bad = subprocess.run([*base, "--start", "20", "--end", "20.5", "--out", str(out)], capture_output=True, text=True,
                         timeout=600)
    assert bad.returncode == 2 and bad.stderr.startswith("error:") and "shorter than a bar" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
