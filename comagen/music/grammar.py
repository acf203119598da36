"""REMI grammar: which tokens may come next, so every sampled sequence decodes.

The succession is  Bar -> Position -> [Pedal*] Pitch -> Velocity -> Duration -> (Pitch | Position
| Bar | EOS), positions only move forward inside a bar, and a pitch is not struck twice at one
position. The tracker also knows where in time the stream is (bars of 2 s on our 120 bpm grid),
which is what a "20 seconds of music" budget counts against.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from comagen.errors import ConfigError
from comagen.music.midi import PIANO_HIGH, PIANO_LOW
from comagen.music.tokenizer import PianoTokenizer

START, AFTER_BAR, AFTER_POSITION, AFTER_PITCH, AFTER_VELOCITY, AFTER_DURATION, ENDED = range(7)


class RemiGrammar:
    """Per-vocabulary tables: the class of each token id and the legal-next masks per state."""

    def __init__(self, tokenizer: PianoTokenizer) -> None:
        if tokenizer.is_bpe:
            raise ConfigError("the REMI grammar works on plain REMI ids, not BPE merges")
        vocab = tokenizer.vocab
        self.size = vocab.size
        self.positions_per_bar = vocab.positions_per_bar
        self.seconds_per_position = vocab.seconds_per_position
        self.value = vocab.value
        self.pitch_id = {vocab.value[i]: i for i in vocab.pitch_ids}
        self.pitch_ids = torch.tensor(sorted(self.pitch_id.values()), dtype=torch.long)
        lo, hi = int(self.pitch_ids.min()), int(self.pitch_ids.max())
        # the pitches as a slice when they are one run of ids: a view, not a gather and a scatter per lean
        self.pitch_span = slice(lo, hi + 1) if hi - lo + 1 == len(self.pitch_ids) else self.pitch_ids
        self.velocity_ids = torch.tensor(vocab.velocity_ids, dtype=torch.long)  # softest to loudest
        self.position_id = torch.full((self.positions_per_bar,), -1, dtype=torch.long)
        for i in vocab.ids_of("Position"):
            self.position_id[vocab.value[i]] = i
        # a pitch slot some vocabularies have but a piano cannot play is never drawn
        self.kind = ["OffPiano" if k == "Pitch" and not PIANO_LOW <= v <= PIANO_HIGH else k
                     for k, v in zip(vocab.kind, vocab.value, strict=True)]
        self.bar_id = tokenizer.bar_id
        self.eos_id = tokenizer.eos_id

        def ids(*kinds: str) -> torch.Tensor:
            mask = torch.zeros(self.size, dtype=torch.bool)
            for i, k in enumerate(self.kind):
                if k in kinds:
                    mask[i] = True
            return mask

        pedal = ("Pedal", "PedalOff")
        self.masks = {
            START: ids("Bar"),
            AFTER_BAR: ids("Bar", "Position"),
            AFTER_POSITION: ids("Pitch", *pedal),
            AFTER_PITCH: ids("Velocity"),
            AFTER_VELOCITY: ids("Duration"),
            AFTER_DURATION: ids("Pitch", "Position", "Bar", "EOS", *pedal),
            ENDED: torch.zeros(self.size, dtype=torch.bool),
        }
        self.masks[ENDED][tokenizer.pad_id] = True
        # after a duration at position p: positions up to p are gone (one precomputed row per p)
        later = torch.arange(self.positions_per_bar)[:, None] < torch.arange(self.positions_per_bar)[None]
        self.after_position = self.masks[AFTER_DURATION].repeat(self.positions_per_bar, 1)
        self.after_position[:, self.position_id] = later & self.masks[AFTER_DURATION][self.position_id]
        self.velocity_mask = ids("Velocity")
        self.pedal_kinds = set(pedal)
        # numpy twins of the masks a step reads: copying and editing a 374-long row costs a microsecond in
        # numpy, ten in torch, and the engine does it for every token of every stream
        self.mask_rows = {state: mask.numpy() for state, mask in self.masks.items()}
        self.after_position_rows = self.after_position.numpy()
        self.pitch_id_of = np.full(128, -1, dtype=np.int64)  # MIDI pitch -> its token id
        self.pitch_id_of[list(self.pitch_id)] = list(self.pitch_id.values())


@dataclass
class GrammarState:
    """Where one stream is: grammar state, bar count, position in bar, pitches at this position."""

    state: int = START
    bars: int = 0
    position: int = -1
    notes: int = 0
    struck: frozenset[int] = frozenset()

    def seconds(self, grammar: RemiGrammar) -> float:
        """Onset time of the current position (0 before the first bar)."""
        if self.bars == 0:
            return 0.0
        return ((self.bars - 1) * grammar.positions_per_bar + max(self.position, 0)) * grammar.seconds_per_position

    def advance(self, grammar: RemiGrammar, token: int) -> GrammarState:
        kind = grammar.kind[token]
        if token == grammar.eos_id:
            return GrammarState(ENDED, self.bars, self.position, self.notes, frozenset())
        if kind == "Bar":
            return GrammarState(AFTER_BAR, self.bars + 1, -1, self.notes, frozenset())
        if kind == "Position":
            return GrammarState(AFTER_POSITION, self.bars, grammar.value[token], self.notes, frozenset())
        if kind == "Pitch":
            return GrammarState(AFTER_PITCH, self.bars, self.position, self.notes,
                                self.struck | {grammar.value[token]})
        if kind == "Velocity":
            return GrammarState(AFTER_VELOCITY, self.bars, self.position, self.notes, self.struck)
        if kind == "Duration":
            return GrammarState(AFTER_DURATION, self.bars, self.position, self.notes + 1, self.struck)
        if kind in grammar.pedal_kinds:
            return GrammarState(AFTER_POSITION, self.bars, self.position, self.notes, self.struck)
        return self  # PAD/BOS change nothing

    def allowed(self, grammar: RemiGrammar) -> torch.Tensor:
        """Boolean mask over the vocabulary of tokens that keep the sequence decodable (a new tensor)."""
        return torch.from_numpy(self.allowed_row(grammar))

    def allowed_row(self, grammar: RemiGrammar) -> np.ndarray:
        """`allowed` as a new numpy row (what the engine stacks for its rows)."""
        if self.state == AFTER_DURATION and self.position >= 0:
            mask = grammar.after_position_rows[self.position].copy()
        else:
            mask = grammar.mask_rows[self.state].copy()
        if self.state in (AFTER_POSITION, AFTER_DURATION) and self.struck:
            mask[grammar.pitch_id_of[list(self.struck)]] = False
        return mask


def track(grammar: RemiGrammar, ids: list[int], state: GrammarState | None = None) -> GrammarState:
    """The grammar state after reading `ids` (a prompt), without checking them."""
    state = state or GrammarState()
    for token in ids:
        state = state.advance(grammar, int(token))
    return state
