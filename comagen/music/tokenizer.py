"""REMI tokens for piano performances: miditok 3 over symusic, on a time-exact grid.

Choices (measured by `bench/token_settings.py` on the MAESTRO validation split, see README):
- 24 positions per beat on a fixed 120 bpm grid: one position is 20.8 ms, so onsets land within
  10.4 ms and the median error is about 5 ms. No tempo tokens: `midi.to_grid` rewrites every file
  at 120 bpm through its own tempo map, so decoding is exact in seconds and never drifts.
- 32 velocity bins; durations at 24/beat up to 1 beat, 12/beat up to 4 beats, 4/beat up to 12.
- Sustain folded into note durations before tokenizing (`pedal="fold"`): no pedal tokens, the
  sequences are shorter and every decoded file sounds pedalled on any synth. `pedal="tokens"`
  keeps Pedal/PedalOff tokens instead.
- Composer identity is not a token: it is a conditioning id fed to the model.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

import symusic
from miditok import REMI, TokenizerConfig, TokSequence
from miditok.tokenizer_training_iterator import TokTrainingIterator

from comagen.errors import ComagenError, ConfigError
from comagen.music.midi import GRID_BPM, PIANO_HIGH, PIANO_LOW, fold_sustain, load_score, to_grid
from comagen.music.vocab import Vocab

SPECIAL_TOKENS = ("PAD", "BOS", "EOS")


@dataclass(frozen=True)
class TokenSettings:
    """The few knobs that matter for piano performances; everything else is fixed."""

    positions_per_beat: int = 24
    num_velocities: int = 32
    max_duration_beats: int = 12
    pedal: str = "fold"  # "fold" (sustain into durations) or "tokens" (Pedal/PedalOff tokens)

    def __post_init__(self) -> None:
        if self.pedal not in ("fold", "tokens"):
            raise ConfigError(f"pedal must be 'fold' or 'tokens', not {self.pedal!r}")
        if self.positions_per_beat < 1 or self.positions_per_beat % 2:
            raise ConfigError("positions_per_beat must be a positive even number")

    def beat_res(self) -> dict[tuple[int, int], int]:
        ppb = self.positions_per_beat
        return {(0, 1): ppb, (1, 4): max(ppb // 2, 4), (4, self.max_duration_beats): 4}

    def miditok_config(self) -> TokenizerConfig:
        return TokenizerConfig(
            pitch_range=(PIANO_LOW, PIANO_HIGH),  # both ends inclusive in miditok
            beat_res=self.beat_res(),
            num_velocities=self.num_velocities,
            special_tokens=list(SPECIAL_TOKENS),
            use_time_signatures=False,
            use_tempos=False,
            use_sustain_pedals=self.pedal == "tokens",
            sustain_pedal_duration=False,
            remove_duplicated_notes=True,
        )


class PianoTokenizer:
    """A REMI tokenizer (optionally BPE-trained) plus the grid preparation around it."""

    def __init__(self, settings: TokenSettings | None = None, remi: REMI | None = None) -> None:
        self.settings = settings or TokenSettings()
        self.remi = remi or REMI(self.settings.miditok_config())
        self.pad_id = self.remi.vocab["PAD_None"]
        self.bos_id = self.remi.vocab["BOS_None"]
        self.eos_id = self.remi.vocab["EOS_None"]
        self.bar_id: int | None = self.remi.vocab.get("Bar_None")  # where a piece can be cut and decoded afresh

    @property
    def vocab_size(self) -> int:
        return len(self.remi)

    @cached_property
    def vocab(self) -> Vocab:
        """What each id means (kind, value, ids by kind, seconds per position), for everyone outside this module."""
        return Vocab.from_tokens(self.remi.vocab, self.vocab_size, self.settings.positions_per_beat, self.is_bpe)

    @property
    def is_bpe(self) -> bool:
        return self.remi.is_trained

    def prepare(self, score: symusic.Score) -> symusic.Score:
        """Put a loaded score on the token grid, folding sustain when configured."""
        grid = to_grid(score, self.settings.positions_per_beat)
        return fold_sustain(grid) if self.settings.pedal == "fold" else grid

    def encode_score(self, score: symusic.Score) -> list[int]:
        """Token ids of a loaded score (BPE-encoded when trained), without BOS/EOS."""
        return self.encode_prepared(self.prepare(score))

    def encode_prepared(self, score: symusic.Score) -> list[int]:
        """Token ids of a score already on the grid (`prepare`); [] when it holds no notes."""
        return list(self.remi.encode(score)[0].ids) if score.note_num() else []

    def encode_file(self, path: str | Path) -> list[int]:
        return self.encode_score(load_score(path))

    def decode_ids(self, ids: list[int]) -> symusic.Score:
        """A score (tick, 120 bpm) from ids; special tokens are ignored."""
        specials = {self.pad_id, self.bos_id, self.eos_id}
        body = [int(i) for i in ids if int(i) not in specials]
        if not body:
            score = symusic.Score(self.settings.positions_per_beat, ttype="tick")
            score.tempos.append(symusic.Tempo(0, GRID_BPM, ttype="tick"))
            score.tracks.append(symusic.Track(name="Piano", program=0, ttype="tick"))
            return score
        score = self.remi.decode([body])
        if not score.tracks:
            score.tracks.append(symusic.Track(name="Piano", program=0, ttype="tick"))
        score.tracks[0].name = "Piano"
        return score

    def token_text(self, token_id: int) -> str:
        return self.remi[int(token_id)]

    def base_tokens(self, ids: list[int]) -> list[str]:
        """The REMI token strings behind ids, expanding BPE merges."""
        if not self.is_bpe:
            return [self.remi[int(i)] for i in ids]
        seq = TokSequence(ids=[int(i) for i in ids], are_ids_encoded=True)
        self.remi.decode_token_ids(seq)
        self.remi.complete_sequence(seq)
        return list(seq.tokens)

    def fingerprint(self) -> str:
        """A short hash of everything that changes the ids: the cache key for token files."""
        payload = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(payload).hexdigest()[:16]

    def to_dict(self) -> dict:
        return {"settings": asdict(self.settings), "remi": json.loads(self._remi_json)}

    @cached_property
    def _remi_json(self) -> str:
        """miditok's own serialisation, written once (the REMI vocabulary never changes after construction)."""
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "tokenizer.json"
            self.remi.save(path)
            return path.read_text()

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> PianoTokenizer:
        try:
            data = json.loads(Path(path).read_text())
            settings = TokenSettings(**data["settings"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path}: not a comagen tokenizer file ({exc})") from None
        with tempfile.TemporaryDirectory() as tmp:
            remi_path = Path(tmp) / "remi.json"
            remi_path.write_text(json.dumps(data["remi"]))
            remi = REMI(params=remi_path)
        return cls(settings, remi)


class _PreparedIterator(TokTrainingIterator):
    """miditok's BPE training iterator, fed through our grid + sustain preparation."""

    def __init__(self, tokenizer: PianoTokenizer, files: list[Path]) -> None:
        super().__init__(tokenizer.remi, files)
        self.piano = tokenizer

    def load_file(self, path: Path) -> list[str]:
        try:
            score = self.piano.prepare(load_score(path))
        except ComagenError:
            return []
        seq = self.piano.remi(score, encode_ids=False, no_preprocess_score=False)
        seqs = seq if isinstance(seq, list) else [seq]
        chunks = [part for s in seqs for part in s.split_per_bars() if len(part) > 0]
        text = self.piano.remi._ids_to_bytes([c.ids for c in chunks], as_one_str=True)
        return [text] if isinstance(text, str) else text


def train_bpe(tokenizer: PianoTokenizer, files: list[Path], vocab_size: int) -> PianoTokenizer:
    """A copy of `tokenizer` with a BPE vocabulary of `vocab_size` learned on `files`."""
    if tokenizer.is_bpe:
        raise ConfigError("this tokenizer is already BPE-trained")
    if vocab_size <= tokenizer.vocab_size:
        raise ConfigError(f"--vocab-size must exceed the base vocabulary ({tokenizer.vocab_size})")
    remi = REMI(tokenizer.settings.miditok_config())
    remi.train(vocab_size=vocab_size, model="BPE", iterator=_PreparedIterator(PianoTokenizer(tokenizer.settings, remi),
                                                                               files))
    return PianoTokenizer(tokenizer.settings, remi)
