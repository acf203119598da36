"""The continuation benchmark's statistics on real MAESTRO excerpts, and one real continuation."""

from __future__ import annotations

from pathlib import Path

import pytest

from comagen.bundle.checkpoint import load_bundle
from comagen.generation.request import Request
from comagen.generation.sampling import Sampling
from comagen.training.continuation import closeness, compare, continue_excerpt, excerpt, pooled_overlap
from comagen.training.data import load_index, load_tokenized, select_split

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "assets" / "checkpoints" / "default"


@pytest.fixture(scope="module")
def items(maestro_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list:
    bundle = load_bundle(DEFAULT)
    pieces = sorted(select_split(load_index(maestro_dir), "validation"), key=lambda p: p.duration)[20:23]
    tokenized = load_tokenized(pieces, bundle.tokenizer, tmp_path_factory.mktemp("cache"), progress=False)
    return [e for e in (excerpt(t, bundle.tokenizer) for t in tokenized) if e]


def test_an_excerpt_compared_with_itself_is_perfect(items: list) -> None:
    assert items
    for item in items:
        prompt = item.prompt_notes()
        same = compare(prompt, prompt)
        assert same["key"] == pytest.approx(1.0) and same["density"] == pytest.approx(0.0)
        assert same["dynamics"] == 0 and same["register"] == 0 and same["silence"] == 0
        assert same["overlap"] == pytest.approx(1.0) and same["density_ratio"] == pytest.approx(1.0)
        assert 0.0 <= same["silence_share"] < 1.0
        assert pooled_overlap([prompt], [prompt])["mean"] == pytest.approx(1.0)


def test_closeness_is_one_at_the_pianist_and_zero_at_another_piece() -> None:
    assert closeness(0.5, 0.5, 0.1) == 1.0 and closeness(0.1, 0.5, 0.1) == 0.0
    assert closeness(0.9, 0.5, 0.1) == pytest.approx(0.0)  # overshooting by as much as the floor falls short
    assert closeness(0.7, 0.5, 0.1) == pytest.approx(0.5) and closeness(0.3, 0.5, 0.1) == pytest.approx(0.5)


def test_prompt_tokens_hold_the_prompt_bars(items: list) -> None:
    bundle = load_bundle(DEFAULT)
    for item in items:
        prompt = item.prompt(bundle.tokenizer)
        assert prompt.seconds == 8.0
        assert bundle.tokenizer.decode_ids(prompt.ids).note_num() == len(item.prompt_notes().time)
        assert len(item.real_notes().time) > 0


def test_a_real_continuation_is_measured(items: list) -> None:
    bundle = load_bundle(DEFAULT)
    request = Request(max_tokens=400, seconds=4.0, sampling=Sampling(1.0, 0, 0.95), seed=0)
    (ours,), figures = continue_excerpt(bundle, items[0], request)
    assert len(ours.time) > 0 and ours.time.min() >= 0 and ours.time.max() < 4.0 and figures["tokens"] > 0
    stats = compare(items[0].prompt_notes(), ours)
    assert -1.0 <= stats["key"] <= 1.0 and stats["density"] >= 0.0 and 0.0 < stats["overlap"] <= 1.0
    assert 0.0 < pooled_overlap([ours], [items[0].real_notes()])["mean"] <= 1.0
