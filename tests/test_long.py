"""Long pieces: the decode state keeps its size over thousands of tokens, progress polls copy only a
tail, the app's live text and roll stay under fixed bounds, a form spans the requested length, and
the CLI takes ten minutes (and refuses more with one line) without generating them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import symusic
import torch
from conftest import maestro_rows, small_conformer_bundle

import studio
from comagen.bundle.checkpoint import Bundle
from comagen.bundle.composers import Composers
from comagen.cli import build_parser, main
from comagen.generation.prompt import Prompt, prompt_from_ids
from comagen.generation.request import MAX_TOKENS_CAP, TOKENS_PER_SECOND_CAP, Request, tokens_for_seconds
from comagen.generation.sampling import Sampling, sample_next
from comagen.generation.session import Session, generate
from comagen.generation.settings import Settings, settings_from_cli
from comagen.model.decoder import PREFILL_CHUNK
from comagen.music.grammar import GrammarState, RemiGrammar
from comagen.music.midi import SECONDS_PER_BAR, load_score
from comagen.render.audio import render_audio, render_wav, wav_bytes
from comagen.runtime import choose_runtime

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "assets" / "checkpoints" / "default"
LONGEST_NAME = 16  # characters of the longest token name ("Duration_12.0.24")


@pytest.fixture(scope="module")
def bundle() -> Bundle:
    """A small random conformer: thousands of tokens in seconds, and the grammar keeps them legal."""
    return small_conformer_bundle(["Bach", "Chopin"])


def _shapes(tree: object) -> list[tuple[int, ...]]:
    """The shape of every buffer in a decode state's cache tree (ring buffers, KV caches, tensors)."""
    if isinstance(tree, dict):
        return [s for v in tree.values() for s in _shapes(v)]
    if isinstance(tree, list):
        return [s for v in tree for s in _shapes(v)]
    buffers = [getattr(tree, name) for name in ("buf", "k", "v") if hasattr(tree, name)] or [tree]
    return [tuple(b.shape) for b in buffers if isinstance(b, torch.Tensor)]


def test_decode_state_keeps_its_size_over_thousands_of_tokens(bundle: Bundle) -> None:
    grammar = RemiGrammar(bundle.tokenizer)
    stream = choose_runtime(bundle, "torch").open(torch.tensor([0]))
    logits = torch.from_numpy(stream.prefill(np.array([[bundle.tokenizer.bos_id]])))
    where, generator = GrammarState(), torch.Generator().manual_seed(0)
    sizes, layouts = [], []
    with torch.inference_mode():
        for step in range(2000):
            allowed = where.allowed(grammar)[None].clone()
            allowed[0, grammar.eos_id] = False
            token = sample_next(logits, allowed, Sampling(), generator)
            where = where.advance(grammar, int(token))
            logits = torch.from_numpy(stream.step(token.numpy()))
            if step % 250 == 0:
                sizes.append(stream.state.nbytes())
                layouts.append(_shapes(stream.state.caches))
    assert stream.state.pos == 2001 and where.bars > 5
    assert torch.isfinite(logits).all()
    assert len(set(sizes)) == 1 and layouts[0] and all(layout == layouts[0] for layout in layouts)


def test_a_long_prompt_prefills_in_chunks_as_one_pass(bundle: Bundle) -> None:
    """A prompt of several PREFILL_CHUNKs (a Continue of a long piece) gives the full forward's logits,
    and so do the steps after it, though a fresh stream reads only the prompt's last `reach` tokens."""
    torch.manual_seed(1)
    tokens = torch.randint(5, bundle.tokenizer.vocab_size, (1, 2 * PREFILL_CHUNK + 300))
    prompt, composer = tokens.shape[1] - 40, torch.tensor([1])
    assert bundle.model.reach(None) < PREFILL_CHUNK  # the prompt is read in part, not in chunks
    with torch.inference_mode():
        reference = bundle.model(tokens, composer)
        state = bundle.model.new_state(1)
        logits, state = bundle.model.prefill(tokens[:, :prompt], composer, state)
        steps = [bundle.model.step(tokens[:, t], composer, state)[0] for t in range(prompt, tokens.shape[1] - 1)]
    assert state.pos == tokens.shape[1] - 1
    assert torch.allclose(logits, reference[:, prompt - 1], atol=1e-4)
    assert torch.allclose(torch.stack(steps, 1), reference[:, prompt:-1], atol=1e-4)


def test_a_prompt_shorter_than_the_reach_is_read_whole(bundle: Bundle) -> None:
    """Cutting a prompt to the tokens that can reach the state must change nothing: one token more
    than the reach, read whole by a stream that has already begun, gives the same logits."""
    torch.manual_seed(2)
    tokens = torch.randint(5, bundle.tokenizer.vocab_size, (1, bundle.model.reach(None) + 1))
    composer = torch.tensor([0])
    with torch.inference_mode():
        cut, _ = bundle.model.prefill(tokens, composer, bundle.model.new_state(1))
        begun = bundle.model.new_state(1)
        bundle.model.prefill(tokens[:, :1], composer, begun)
        whole, _ = bundle.model.prefill(tokens[:, 1:], composer, begun)
    assert torch.allclose(cut, whole, atol=1e-5)


def test_progress_polls_copy_only_a_tail(bundle: Bundle) -> None:
    session = Session(bundle, Prompt.empty(), Request(max_tokens=1200, seconds=600.0, seed=1))
    for step in session:
        if step % 100 == 0:
            progress = session.snapshot(tail=100)
            ids = session.rows[0].ids
            assert progress.rows[0] == tuple(ids[-100:]) and progress.lengths == (len(ids),)
            assert progress.stats["tokens"] == len(ids)
    whole = session.snapshot()
    assert whole.rows[0] == tuple(session.generated()) and len(whole.rows[0]) > 1100
    assert session.snapshot(tail=0).rows == ((),)


def _blue(image: np.ndarray) -> bool:
    """Whether a live roll shows prompt notes (blue) anywhere."""
    return bool(((image[..., 2].astype(int) - image[..., 0]) > 40).any())


def _orange(image: np.ndarray) -> bool:
    """Whether a live roll shows new notes (orange) anywhere."""
    return bool(((image[..., 0].astype(int) - image[..., 2]) > 40).any())


def test_live_text_and_roll_stay_under_fixed_bounds(bundle: Bundle, maestro_dir: Path) -> None:
    """A real 10-minute-class MAESTRO performance streamed as if it were being generated."""
    row = next(r for r in maestro_rows("validation") if 400 < float(r["duration"]) < 700)
    ids = bundle.tokenizer.encode_score(load_score(maestro_dir / row["midi_filename"]))
    assert len(ids) > 3 * studio.LIVE_ROLL_TOKENS
    prompt = prompt_from_ids(bundle.tokenizer, list(ids[:400]))
    new, tail = ids[400:], max(studio.TEXT_TAIL, studio.LIVE_ROLL_TOKENS)
    for n in (300, 2000, studio.LIVE_ROLL_TOKENS, studio.LIVE_ROLL_TOKENS + 1, len(new)):
        shown = list(new[:n][-tail:])
        text = studio.token_text(bundle, shown, n)
        assert len(text) <= studio.TEXT_TAIL * (LONGEST_NAME + 1) + 40
        assert text.startswith(f"... ({n - studio.TEXT_TAIL} earlier tokens)") == (n > studio.TEXT_TAIL)
        roll = studio.live_piece_roll(bundle, prompt, shown, n)
        assert roll.shape[1] == studio.LIVE_WIDTH and roll.shape[0] <= 128 * 4 and roll.shape[2] == 3
        assert _blue(roll) == (n <= 2000)  # the prompt's notes, until the window holds only new music
    long_prompt = prompt_from_ids(bundle.tokenizer, list(ids[:6000]))  # a Continue of a long piece
    roll = studio.live_piece_roll(bundle, long_prompt, list(ids[6000:6400]), 400)
    assert roll.shape[1] == studio.LIVE_WIDTH and _blue(roll) and _orange(roll)


def test_a_form_spans_the_requested_length(bundle: Bundle) -> None:
    composers = Composers(["Bach"])
    assert Settings(form="AABA", seconds=600).request(composers, None, max_tokens=10).section_bars == 75
    assert Settings(form="verse-chorus-bridge", seconds=600).request(composers, None, max_tokens=10).section_bars \
        == 100
    assert Settings(form="AABA", seconds=600, section_bars=4).request(composers, None, max_tokens=10).section_bars == 4
    request = Settings(form="ABA", seconds=6, seed=3).request(composers, None, max_tokens=MAX_TOKENS_CAP)
    session = generate(bundle, Prompt.empty(), request)
    starts = session.section_starts(0)
    assert request.section_bars == 1 and [b - a for a, b in zip(starts, starts[1:], strict=False)] == [2.0, 2.0]
    assert session.rows[0].grammar.bars == 3  # three one-bar sections: 6 s, as asked
    assert 3 * SECONDS_PER_BAR - 2 <= session.stats["music_seconds"] <= 6.0


def test_cli_takes_ten_minutes_and_refuses_more(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The real command-line entry point, in this process (a subprocess would import torch twice more)."""
    args = build_parser().parse_args(["generate", "--checkpoint", str(SHIPPED), "--seconds", "600",
                                      "--out", str(tmp_path / "x.mid")])
    request = settings_from_cli(args).request(Composers(["Bach"]), None, max_tokens=tokens_for_seconds(600))
    assert request.seconds == 600.0 and request.max_tokens == 600 * TOKENS_PER_SECOND_CAP + 256
    common = ["generate", "--checkpoint", str(SHIPPED), "--runtime", "torch", "--json"]
    assert main([*common, "--seconds", "601", "--out", str(tmp_path / "no.mid")]) == 2
    out = capsys.readouterr()
    assert out.err.strip().splitlines() == ["error: length must be between 1 and 600 seconds, not 601"]
    assert not out.out and not (tmp_path / "no.mid").exists()
    assert main([*common, "--seconds", "600", "--tokens", "40", "--out", str(tmp_path / "yes.mid")]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["tokens"] <= 40
    assert (tmp_path / "yes.mid").read_bytes().startswith(b"MThd")


def test_streamed_wav_render_equals_the_float_path(validation_files: list[Path], tmp_path: Path) -> None:
    """`render_wav` (16-bit buffer, written block by block) writes exactly the bytes of the float path."""
    score = symusic.Score(validation_files[0]).to("second")
    start = score.start() + 2.0
    score = score.clip(start, start + 12.0, clip_end=True).shift_time(-start)
    written = render_wav(score, tmp_path / "piece.wav", sample_rate=22050)
    assert written.read_bytes() == wav_bytes(*render_audio(score, sample_rate=22050))
    assert len(written.read_bytes()) > 12 * 22050 * 4
