"""One generation as the page's history keeps it, so Continue, Undo and Infill can build on it."""

from __future__ import annotations

from dataclasses import dataclass, field

from comagen.generation.prompt import Prompt


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


def shown_ids(history: list[Take], variation: int) -> list[int]:
    """The piece on show: the last take's prompt and its chosen variation (clamped to the ones it has)."""
    last = history[-1]
    return last.prompt.ids + last.rows[min(max(int(variation), 0), len(last.rows) - 1)]
