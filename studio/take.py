"""One generation as the page's history keeps it, so Continue, Undo and Infill can build on it."""

from __future__ import annotations

from dataclasses import dataclass, field

import symusic

from comagen.generation.prompt import Prompt, continuation_score
from comagen.music.midi import piano
from comagen.music.tokenizer import PianoTokenizer


@dataclass
class Take:
    """One generation kept in the history: its prompt, each variation's new ids, and how it was made."""

    prompt: Prompt
    rows: list[list[int]]
    seed: int
    composer: int
    windows: list[int] | None
    name: str
    stats: dict = field(default_factory=dict)
    span: tuple[float, float] | None = None  # an infilled stretch (seconds), drawn in its own colour
    scores: list[symusic.Score] | None = None  # each variation spliced into a file (an infill's), when made


def shown_ids(history: list[Take], variation: int) -> list[int]:
    """The piece on show: the last take's prompt and its chosen variation (clamped to the ones it has)."""
    last = history[-1]
    return last.prompt.ids + last.rows[_clamped(last, variation)]


def take_score(tokenizer: PianoTokenizer, take: Take, variation: int) -> symusic.Score:
    """What a variation plays, shows and downloads: its spliced score when the take made one, else its
    prompt's file with the new notes spliced in (`continuation_score`), else its decoded tokens."""
    if take.scores is not None:
        return take.scores[variation]
    return continuation_score(tokenizer, take.prompt, take.rows[variation])


def shown_score(tokenizer: PianoTokenizer, history: list[Take], variation: int) -> symusic.Score | None:
    """The piece on show as a file of the user's (what Continue and Infill splice into); None when it
    is tokens only (started from nothing)."""
    last = history[-1]
    if last.scores is None and last.prompt.original is None:
        return None
    return take_score(tokenizer, last, _clamped(last, variation))


def _clamped(take: Take, variation: int) -> int:
    return min(max(int(variation), 0), len(take.rows) - 1)


def played_take(tokenizer: PianoTokenizer, score: symusic.Score, name: str) -> Take:
    """A piece played live (a duet's two parts) as a take: its own score shown, heard and downloaded;
    its tokens (both parts as one piano) what Continue and Infill build on."""
    tick = score.to("tick", min_dur=1)
    return Take(Prompt.empty(), [tokenizer.encode_score(piano(tick))], 0, 0, None, name, scores=[tick])
