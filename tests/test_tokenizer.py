"""Token fidelity on real MAESTRO validation files, and every kind of bad MIDI input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import symusic

from comagen.errors import (
    CorruptMidiError,
    DrumOnlyError,
    EmptyMidiError,
    MidiError,
    MidiTooLongError,
    NotMidiError,
)
from comagen.music.midi import fold_sustain, load_score, midi_bytes, to_grid
from comagen.music.roundtrip import roundtrip_file
from comagen.music.tokenizer import PianoTokenizer, TokenSettings

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tokenizer() -> PianoTokenizer:
    return PianoTokenizer()


def test_vocab_reads_every_id(tokenizer: PianoTokenizer) -> None:
    """The one reading of the vocabulary agrees with miditok's token strings."""
    vocab = tokenizer.vocab
    assert vocab.size == tokenizer.vocab_size
    for i in range(vocab.size):
        kind, _, value = tokenizer.token_text(i).partition("_")
        assert vocab.kind[i] == kind and (kind not in ("Pitch", "Velocity", "Position") or vocab.value[i] == int(value))
    assert [vocab.value[i] for i in vocab.pitch_ids] == list(range(21, 109))
    assert len(vocab.velocity_ids) == 32 and [vocab.value[i] for i in vocab.velocity_ids] == sorted(
        vocab.value[i] for i in vocab.velocity_ids)
    assert vocab.positions_per_bar == 96 and vocab.seconds_per_position == pytest.approx(0.5 / 24)
    assert vocab.notes(tokenizer.encode_score(_score_with(120.0))) == 200


def test_fidelity_targets_on_validation_files(tokenizer: PianoTokenizer, validation_files: list[Path]) -> None:
    for path in validation_files:
        rt = roundtrip_file(tokenizer, path)
        assert abs(rt.notes_in - rt.notes_out) <= 0.005 * rt.notes_in, path.name
        assert rt.onset_error_ms_median <= 6.0, path.name
        assert rt.onset_error_ms_p95 <= 15.0, path.name
        assert rt.last_note_error_ms <= 20.0, path.name
        assert 3.0 < rt.tokens_per_note < 5.0


def _score_with(tempo_qpm: float) -> symusic.Score:
    score = symusic.Score(480, ttype="tick")
    score.tempos.append(symusic.Tempo(0, tempo_qpm, ttype="tick"))
    track = symusic.Track(name="p", program=0, ttype="tick")
    for k in range(200):
        track.notes.append(symusic.Note(k * 480, 240, 60 + k % 12, 80, ttype="tick"))
    score.tracks.append(track)
    return score


def test_decoding_is_time_exact_at_any_tempo(tokenizer: PianoTokenizer) -> None:
    """A file at 97 bpm (not a grid tempo) keeps its timing in seconds after a round trip."""
    score = load_score(_score_with(97.0).dumps_midi())
    decoded = tokenizer.decode_ids(tokenizer.encode_score(score)).to("second")
    want = score.to("second").tracks[0].notes.numpy()["time"]
    got = decoded.tracks[0].notes.numpy()["time"]
    assert len(got) == len(want)
    assert np.max(np.abs(got - want)) < 0.0105  # half a 20.8 ms grid step, no drift at 200 beats


def test_sustain_is_folded_into_durations(train_file: Path) -> None:
    score = to_grid(load_score(train_file), 24)
    assert len(score.tracks[0].pedals) > 0
    folded = fold_sustain(score)
    before = score.tracks[0].notes.numpy()["duration"].sum()
    after = folded.tracks[0].notes.numpy()["duration"].sum()
    assert after > 1.5 * before  # a pedalled performance rings much longer than its key presses
    assert len(folded.tracks[0].pedals) == 0


def test_pedal_tokens_mode_keeps_pedals(train_file: Path) -> None:
    tok = PianoTokenizer(TokenSettings(pedal="tokens"))
    clip = load_score(train_file)
    ids = tok.encode_score(clip)
    assert any(tok.token_text(i).startswith("Pedal") for i in ids[:3000])
    decoded = tok.decode_ids(ids[:3000])
    assert len(decoded.tracks[0].pedals) > 0
    assert b"\xb0\x40" in midi_bytes(decoded)  # CC64 on channel 0 is written


def test_tokenizer_save_load_same_ids(tokenizer: PianoTokenizer, tmp_path: Path, train_file: Path) -> None:
    tokenizer.save(tmp_path / "tok.json")
    again = PianoTokenizer.load(tmp_path / "tok.json")
    score = load_score(train_file)
    assert again.encode_score(score)[:500] == tokenizer.encode_score(score)[:500]
    assert again.fingerprint() == tokenizer.fingerprint()
    assert PianoTokenizer(TokenSettings(positions_per_beat=8)).fingerprint() != tokenizer.fingerprint()


# ------------------------------------------------------------------ bad input


def _drum_only() -> bytes:
    score = symusic.Score(480, ttype="tick")
    track = symusic.Track(name="drums", program=0, is_drum=True, ttype="tick")
    track.notes.append(symusic.Note(0, 100, 36, 100, ttype="tick"))
    score.tracks.append(track)
    return score.dumps_midi()


def _no_notes() -> bytes:
    score = symusic.Score(480, ttype="tick")
    score.tempos.append(symusic.Tempo(0, 120.0, ttype="tick"))
    score.tracks.append(symusic.Track(name="empty", program=0, ttype="tick"))
    return score.dumps_midi()


BAD = {
    "corrupt": (b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01\xe0MTrk\xff\xff\xff\xffgarbage", CorruptMidiError),
    "empty": (b"", EmptyMidiError),
    "no_notes": (_no_notes(), EmptyMidiError),
    "drum_only": (_drum_only(), DrumOnlyError),
    "not_midi": (b"<html>this is not a MIDI file</html>", NotMidiError),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_midi_raises_one_clear_error(name: str, tmp_path: Path) -> None:
    data, error = BAD[name]
    with pytest.raises(error) as info:
        load_score(data)
    assert "\n" not in str(info.value)
    path = tmp_path / f"{name}.mid"
    path.write_bytes(data)
    proc = subprocess.run([sys.executable, "-m", "comagen", "roundtrip", str(path), "--json"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode != 0
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error:")
    assert "Traceback" not in proc.stderr


def test_missing_path_and_limits(tmp_path: Path, train_file: Path) -> None:
    with pytest.raises(NotMidiError):
        load_score(tmp_path / "nothere.mid")
    with pytest.raises(MidiTooLongError):
        load_score(train_file, max_seconds=10.0)
    with pytest.raises(MidiTooLongError):
        load_score(train_file, max_bytes=1000)


def test_sixteen_tracks_merge_into_one_piano() -> None:
    score = symusic.Score(480, ttype="tick")
    for ch in range(16):
        track = symusic.Track(name=f"t{ch}", program=ch * 8, is_drum=ch == 9, ttype="tick")
        track.notes.append(symusic.Note(ch * 100, 200, 40 + ch, 90, ttype="tick"))
        score.tracks.append(track)
    loaded = load_score(score.dumps_midi())
    assert len(loaded.tracks) == 1 and loaded.note_num() == 15  # the drum track is dropped


def test_roundtrip_cli_json_keys(validation_files: list[Path]) -> None:
    proc = subprocess.run([sys.executable, "-m", "comagen", "roundtrip", str(validation_files[0]), "--json"],
                          capture_output=True, text=True, cwd=ROOT, check=True)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in ("notes_in", "notes_out", "tokens", "onset_error_ms_median", "onset_error_ms_p95",
                "last_note_error_ms", "duration_error_ms_median"):
        assert key in result
    assert result["onset_error_ms_median"] <= 6.0


def test_every_midi_error_is_a_midi_error() -> None:
    for _, error in BAD.values():
        assert issubclass(error, MidiError)


def test_bpe_tokenizer_is_shorter_and_decodes_the_same(validation_files: list[Path], tmp_path: Path) -> None:
    from comagen.music.tokenizer import train_bpe

    base = PianoTokenizer()
    bpe = train_bpe(base, validation_files[:3], vocab_size=base.vocab_size + 100)
    bpe.save(tmp_path / "bpe.json")
    bpe = PianoTokenizer.load(tmp_path / "bpe.json")
    assert bpe.is_bpe and bpe.vocab_size == base.vocab_size + 100
    assert set(bpe.vocab.kind) == {"BPE"} and bpe.vocab.size == bpe.vocab_size  # a merge mixes kinds
    score = load_score(validation_files[3])
    plain, merged = base.encode_score(score), bpe.encode_score(score)
    assert len(merged) < len(plain)
    assert bpe.base_tokens(merged) == [base.token_text(i) for i in plain]
    a = base.decode_ids(plain).tracks[0].notes.numpy()
    b = bpe.decode_ids(merged).tracks[0].notes.numpy()
    assert (a["time"] == b["time"]).all() and (a["pitch"] == b["pitch"]).all()
