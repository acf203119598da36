"""What a generation continues: a prompt's token ids and the bar line, in seconds, where the new music starts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import symusic

from comagen.music.midi import SECONDS_PER_BAR, load_original, piano
from comagen.music.splice import splice_ids
from comagen.music.tokenizer import PianoTokenizer


@dataclass
class Prompt:
    """Prompt ids (no BOS) and the time, on a bar line, where the continuation starts; `original` is
    the score the ids were made of (a prompt file as written), which a result keeps up to `seconds`."""

    ids: list[int]
    seconds: float
    original: symusic.Score | None = field(default=None, compare=False, repr=False)

    @classmethod
    def empty(cls) -> Prompt:
        return cls([], 0.0)


def load_prompt(tokenizer: PianoTokenizer, source: str | Path | bytes | None,
                seconds: float | None = None) -> Prompt:
    """Tokenize a prompt file (path or bytes), keeping its first `seconds` cut at a bar line."""
    if source is None:
        return Prompt.empty()
    original = load_original(source)
    score = tokenizer.prepare(piano(original))
    if seconds is not None:
        bars = max(1, round(seconds / SECONDS_PER_BAR))
        score = score.clip(0, bars * 4 * score.ticks_per_quarter, clip_end=False)  # onsets before the cut, whole
    return Prompt(tokenizer.encode_prepared(score), _next_bar_seconds(score), original)


def continuation_score(tokenizer: PianoTokenizer, prompt: Prompt, ids: list[int]) -> symusic.Score:
    """The piece a continuation `ids` of `prompt` makes: the prompt's own score as it was up to the
    cut with the new notes spliced in (`comagen.music.splice`), or the decoded tokens when the
    prompt has no score of its own."""
    if prompt.original is None:
        return tokenizer.decode_ids(prompt.ids + ids)
    return splice_ids(tokenizer, prompt.original, prompt.ids, ids, prompt.seconds)


def prompt_from_ids(tokenizer: PianoTokenizer, ids: list[int], original: symusic.Score | None = None) -> Prompt:
    """A prompt of token ids (e.g. a result to continue; EOS dropped), continuing on its next bar;
    `original` is the score they stand for, when there is one (a result spliced into a file)."""
    ids = [t for t in ids if t != tokenizer.eos_id]
    return Prompt(ids, _next_bar_seconds(tokenizer.decode_ids(ids)), original)


def _next_bar_seconds(score: symusic.Score) -> float:
    """Where the bar after the last onset starts, in seconds (0 for an empty score)."""
    onsets = [n.time for t in score.tracks for n in t.notes]
    if not onsets:
        return 0.0
    return (max(onsets) // (4 * score.ticks_per_quarter) + 1) * SECONDS_PER_BAR
