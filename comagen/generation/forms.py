"""Musical forms (e.g. "AABA", N bars a section): which section a variation is in, and what a repeat replays.

Sections start on bar lines. A new letter is sampled freely for N bars and remembered. A repeated
letter replays the remembered section's notes through the model state (so what follows hears it)
with variation: every velocity is re-sampled by the model, so the repeat keeps its notes but is
played anew.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from comagen.errors import ConfigError
from comagen.music.grammar import RemiGrammar
from comagen.music.midi import SECONDS_PER_BAR

FORMS = {"AABA", "ABAB", "ABAC", "AABB", "ABA", "verse-chorus-bridge"}
SECTION_WORDS = {"verse": "V", "chorus": "C", "bridge": "B", "intro": "I", "outro": "O"}


def parse_form(form: str | None) -> list[str]:
    """Section letters of a form: 'AABA' -> A A B A; 'verse-chorus-bridge' -> V C B."""
    if not form:
        return []
    if "-" in form:
        parts = [p for p in form.lower().split("-") if p]
        if not all(p in SECTION_WORDS for p in parts):
            raise ConfigError(f"unknown form {form!r}: use letters like AABA or words verse-chorus-bridge")
        return [SECTION_WORDS[p] for p in parts]
    if not form.isalpha() or not form.isupper() or len(form) > 16:
        raise ConfigError(f"unknown form {form!r}: use capital letters like AABA, ABAB, ABAC")
    return list(form)


def section_bars_for(form: str | None, seconds: float) -> int:
    """Bars per section so that the whole form lasts about `seconds` (at least one bar each):
    an AABA over ten minutes gets 75-bar sections."""
    letters = parse_form(form)
    return max(1, round(seconds / SECONDS_PER_BAR / max(len(letters), 1)))


@dataclass
class FormPlan:
    """One variation's walk through a form: the section it is in (opened at token `start` of the row,
    `bars` bar lines written since), each letter's remembered tokens, the tokens a replay still
    forces, and the token index where each section began. With no letters it never acts."""

    letters: list[str]
    section_bars: int
    grammar: RemiGrammar | None  # a form needs one; without a form it is never read
    section: int = -1
    start: int = 0
    bars: int = 0
    memory: dict[str, list[int]] = field(default_factory=dict)
    forced: list[int] = field(default_factory=list)
    boundaries: list[int] = field(default_factory=list)

    def begin(self) -> None:
        """Open the first section (before any token is written)."""
        if self.letters:
            self._enter(0, 0)

    def replaying_velocity(self) -> bool:
        """Whether the next forced token is a velocity, which the model samples anew."""
        return bool(self.forced) and self.grammar.kind[self.forced[0]] == "Velocity"

    def replay(self, sampled: int) -> int:
        """The next forced token: the remembered one, or for a velocity the one the model `sampled`."""
        forced = self.forced.pop(0)
        return sampled if self.grammar.kind[forced] == "Velocity" else forced

    def ends_section(self, token: int) -> bool:
        """Whether `token` is the bar line that closes a full section."""
        return bool(self.letters) and token == self.grammar.bar_id and self.bars >= self.section_bars

    def next_section(self, ids: list[int]) -> bool:
        """Close the current section of a row's `ids` (remember it) and open the next; False when the form is done."""
        letter = self.letters[self.section]
        self.memory.setdefault(letter, ids[self.start:])
        if self.section + 1 >= len(self.letters):
            return False
        self._enter(self.section + 1, len(ids))
        return True

    def wrote(self, token: int) -> None:
        """Count a token the row has kept (only bar lines matter)."""
        if token == self.grammar.bar_id:
            self.bars += 1

    def _enter(self, k: int, written: int) -> None:
        self.section, self.start, self.bars = k, written, 0
        self.boundaries.append(written)
        letter = self.letters[k]
        self.forced = list(self.memory[letter]) if letter in self.memory else [self.grammar.bar_id]
