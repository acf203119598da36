"""What each token id means: the one reading of the REMI vocabulary that the grammar (and through it the
key prior), training data, evaluation and infill share, so none of them parses token strings itself.

Token strings are `Kind_value` (Pitch_60, Velocity_63, Position_5, Duration_1.0.24, Bar_None, EOS_None).
A BPE-trained tokenizer's ids are merges of several such tokens, so there every id is of kind "BPE".
"""

from __future__ import annotations

from dataclasses import dataclass

from comagen.music.midi import SECONDS_PER_BEAT

VALUED_KINDS = ("Pitch", "Velocity", "Position")  # the kinds whose value is an integer the code reads
BPE_KIND = "BPE"


@dataclass(frozen=True)
class Vocab:
    """Per id: its kind and (for pitches, velocities and positions) its integer value; ids by kind; the grid."""

    kind: tuple[str, ...]
    value: tuple[int, ...]
    positions_per_beat: int

    @classmethod
    def from_tokens(cls, tokens: dict[str, int], size: int, positions_per_beat: int, bpe: bool) -> Vocab:
        """Read miditok's `{text: id}` table (`size` ids in all; a BPE vocabulary's ids all count as merges)."""
        if bpe:
            return cls((BPE_KIND,) * size, (0,) * size, positions_per_beat)
        kind, value = [""] * size, [0] * size
        for text, i in tokens.items():
            kind[i], _, raw = text.partition("_")
            if kind[i] in VALUED_KINDS:
                value[i] = int(raw)
        return cls(tuple(kind), tuple(value), positions_per_beat)

    @property
    def size(self) -> int:
        return len(self.kind)

    def ids_of(self, *kinds: str) -> list[int]:
        """The ids of the given kinds, in id order."""
        return [i for i, k in enumerate(self.kind) if k in kinds]

    @property
    def pitch_ids(self) -> list[int]:
        return self.ids_of("Pitch")

    def notes(self, ids: list[int]) -> int:
        """How many notes `ids` strike (one Pitch token a note)."""
        return sum(self.kind[int(t)] == "Pitch" for t in ids)

    @property
    def velocity_ids(self) -> list[int]:
        """Velocity ids from the softest to the loudest."""
        return sorted(self.ids_of("Velocity"), key=lambda i: self.value[i])

    @property
    def positions_per_bar(self) -> int:
        return 4 * self.positions_per_beat  # 4/4

    @property
    def seconds_per_position(self) -> float:
        return SECONDS_PER_BEAT / self.positions_per_beat
