"""The duet engine: player notes written as the tokenizer writes them, fed into the streaming state as
they arrive (the same state a prefill of the take builds), answers with times, cut-ins, turns, and
the terminal front end driven by a real MAESTRO phrase through FluidSynth."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
import symusic
import torch

from comagen.bundle.checkpoint import Bundle
from comagen.generation.duet import Duet
from comagen.generation.player import MAX_NOTES_PER_SECOND, PlayerPart, TimedNote
from comagen.generation.turns import DuetLoop, Turns
from comagen.music.grammar import GrammarState, RemiGrammar, track
from comagen.music.midi import load_score, midi_bytes
from comagen.music.writer import RemiWriter

ROOT = Path(__file__).resolve().parents[1]


def phrase(path: Path, seconds: float) -> list[TimedNote]:
    """The first `seconds` of a real performance as whole notes, onset order."""
    notes = load_score(path).to("second").tracks[0].notes
    return sorted((TimedNote(n.time, n.time + n.duration, n.pitch, n.velocity) for n in notes if n.time < seconds),
                  key=lambda n: (n.start, n.pitch))


def prefilled_logits(duet: Duet) -> np.ndarray:
    """What a fresh stream that read the duet's whole take in one prefill gives next."""
    stream = duet.runtime.open(torch.tensor([duet.request.composer]))
    with torch.inference_mode():
        return stream.prefill(np.array([[duet.tokenizer.bos_id, *duet.history]]))


def test_writer_writes_what_the_tokenizer_writes(default_bundle: Bundle, validation_files: list[Path]) -> None:
    tok = default_bundle.tokenizer
    grammar = RemiGrammar(tok)
    writer = RemiWriter(tok, grammar)
    score = tok.prepare(load_score(validation_files[1])).clip(0, 20 * grammar.positions_per_bar, clip_end=False)
    notes = score.tracks[0].notes.numpy()
    state, ids = GrammarState(), []
    for i in np.lexsort((notes["pitch"], notes["time"])):
        tick, pitch = int(notes["time"][i]), int(notes["pitch"][i])
        assert writer.can_write(state, tick, pitch)
        written = writer.note(state, tick, pitch, int(notes["velocity"][i]), int(notes["duration"][i]))
        state = track(grammar, written, state)
        ids += written
    assert ids == tok.encode_prepared(score)


def test_player_part_sustain_restrike_flood_and_stuck_keys() -> None:
    part = PlayerPart()
    part.pedal(0.0, True)
    part.note_on(0.1, 60, 80)
    part.note_off(0.3, 60)  # the pedal holds it
    assert part.settled() == []
    part.pedal(1.0, False)
    assert part.settled() == [TimedNote(0.1, 1.0, 60, 80)]
    part.note_on(2.0, 64, 70)
    part.note_on(2.5, 64, 90)  # struck again: the first one ends there
    part.note_off(2.6, 64)
    assert [(n.start, n.end) for n in part.settled()] == [(2.0, 2.5), (2.5, 2.6)]
    assert not part.note_on(3.0, 12, 80)  # off the piano
    kept = sum(part.note_on(4.0 + i / 1000, 21 + i % 88, 60) for i in range(1000))  # a cat on the keys
    assert kept == MAX_NOTES_PER_SECOND and "cat" in part.messages[-1]
    closed = part.close(5.0)  # keys never released: ended at the takeover, said once
    assert len(closed) == MAX_NOTES_PER_SECOND and all(n.end <= 5.0 for n in closed)
    assert "still held" in part.messages[-1]


@pytest.fixture(scope="module")
def torch_duet(default_bundle: Bundle, validation_files: list[Path]) -> Duet:
    duet = Duet(default_bundle, runtime="torch")
    for note in phrase(validation_files[0], 6.0):
        duet.play([note])  # one note at a time, as a player's notes arrive
    return duet


def test_notes_fed_while_playing_leave_the_state_a_prefill_would(torch_duet: Duet) -> None:
    assert len(torch_duet.history) > 50
    torch.testing.assert_close(torch_duet.logits, prefilled_logits(torch_duet), rtol=1e-4, atol=1e-4)


def test_an_answer_starts_at_once_and_a_cut_in_keeps_what_sounded(torch_duet: Duet) -> None:
    now = torch_duet.notes[-1].end + 1.0
    answer = list(torch_duet.answer(now, seconds=4.0))
    assert answer and all(n.part == "model" for n in answer)
    assert answer[0].start >= now and answer[-1].start < answer[0].start + 4.0 + 1e-6
    assert [n.start for n in answer] == sorted(n.start for n in answer)
    cut = answer[len(answer) // 2].start
    players = [n for n in torch_duet.notes if n.part == "player"]
    torch_duet.cut_in(cut)
    assert {n for n in torch_duet.notes if n.part == "player"} == set(players)  # all kept
    heard = [n for n in torch_duet.notes if n.part == "model"]
    assert 0 < len(heard) < len(answer) and all(n.start < cut and n.end <= cut for n in heard)
    torch.testing.assert_close(torch_duet.logits, prefilled_logits(torch_duet), rtol=1e-4, atol=1e-4)
    take = torch_duet.take()
    assert [t.name for t in take.tracks] == ["Player", "Model"] and len(take.tracks[1].notes) == len(heard)


@pytest.mark.parametrize("runtime", ["torch", "onnx-int8"])
def test_a_stream_snapshot_restores_exactly(default_bundle: Bundle, runtime: str) -> None:
    stream = Duet(default_bundle, runtime=runtime).stream
    tokens = [np.array([i]) for i in (4, 40, 120, 200)]
    with torch.inference_mode():
        snapshot = stream.snapshot()
        first = [stream.step(t) for t in tokens]
        stream.restore(snapshot)
        again = [stream.step(t) for t in tokens]
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)


def test_an_answer_prepared_in_the_pause_is_taken_back_or_sounds_as_the_turn_passes(torch_duet: Duet) -> None:
    duet = torch_duet
    history, notes, logits = list(duet.history), list(duet.notes), duet.logits.copy()
    at = max(n.end for n in duet.notes) + 1.0
    prepared = [duet.prepare(at, seconds=4.0) for _ in range(3)]
    assert all(prepared) and prepared[0].start == pytest.approx(at) and duet.prepared == prepared
    duet.discard()  # the player plays on: all of it is taken back
    assert duet.prepared == [] and duet.history == history and duet.notes == notes
    torch.testing.assert_close(duet.logits, logits, rtol=0, atol=0)
    duet.play([TimedNote(at, at + 0.5, 60, 80)])  # the stream itself went back: a step after it agrees
    torch.testing.assert_close(duet.logits, prefilled_logits(duet), rtol=1e-4, atol=1e-4)
    at += 2.0
    ahead = [duet.prepare(at, seconds=4.0) for _ in range(2)]
    answer = list(duet.answer(at + 0.05, seconds=4.0))  # the turn passes: the answer goes on from them
    assert answer[:2] == ahead and answer[0].start == pytest.approx(at) and len(answer) > 2
    assert [n.start for n in answer] == sorted(n.start for n in answer)
    torch.testing.assert_close(duet.logits, prefilled_logits(duet), rtol=1e-4, atol=1e-4)


def test_turns_pass_after_a_pause_and_a_key_cuts_the_answer(default_bundle: Bundle,
                                                          validation_files: list[Path]) -> None:
    events: queue.Queue[dict] = queue.Queue()
    loop = DuetLoop(Duet(default_bundle), Turns(pause=1.0, answer_bars=4), events.put)
    try:
        t0 = time.monotonic()
        for note in phrase(validation_files[0], 1.0):  # a phrase, played faster than real time
            loop.key(t0 + note.start / 10, note.pitch, note.velocity)
            loop.key(t0 + note.end / 10, note.pitch, 0)
        wait_for(events, lambda e: e.get("tentative"))  # the answer's start, prepared while the pause runs
        now = time.monotonic()
        loop.key(now, 60, 90)  # the player plays on: it is taken back
        loop.key(now + 0.05, 60, 0)
        seen = wait_for(events, lambda e: e["type"] == "retract")
        seen = wait_for(events, lambda e: e["type"] == "turn" and e["who"] == "model")
        ahead = [e for e in seen if e["type"] == "note"]  # prepared again, timed for the turn
        assert ahead and all(e["tentative"] for e in ahead) and ahead[0]["start"] <= seen[-1]["at"]
        assert ahead[0]["start"] >= now + 0.05 + 1.0 - 1e-6  # not before the pause after the last key
        wait_for(events, lambda e: e["type"] == "note" and not e.get("tentative"))
        loop.key(time.monotonic(), 62, 90)  # the player cuts in while the answer sounds
        seen = wait_for(events, lambda e: e["type"] == "turn" and e["who"] == "player")
        assert any(e["type"] == "cut" for e in seen)
    finally:
        loop.close()


def wait_for(events: queue.Queue[dict], done, timeout: float = 120.0) -> list[dict]:
    """The events up to the first that `done` accepts (an error event fails the test)."""
    seen = []
    while True:
        event = events.get(timeout=timeout)
        assert event["type"] != "error", event
        seen.append(event)
        if done(event):
            return seen


def test_terminal_duet_from_a_file_through_fluidsynth(tmp_path: Path, validation_files: list[Path]) -> None:
    score = load_score(validation_files[0]).to("second").clip(0, 4.0, clip_end=True)
    (tmp_path / "phrase.mid").write_bytes(midi_bytes(score.to("tick")))
    wav, take = tmp_path / "live.wav", tmp_path / "take.mid"
    done = subprocess.run(
        [sys.executable, "-m", "comagen", "duet", "--checkpoint", str(ROOT / "assets/checkpoints/default"),
         "--in-file", str(tmp_path / "phrase.mid"), "--audio-driver", "file", "--audio-file", str(wav),
         "--take", str(take), "--answer-bars", "1", "--pause", "0.5", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["answers"] >= 1 and result["notes"]["player"] > 0 and result["notes"]["model"] > 0
    written = symusic.Score.from_file(str(take))
    assert [len(t.notes) > 0 for t in written.tracks] == [True, True]
    samples, _ = soundfile.read(str(wav))
    assert np.abs(samples).max() > 0.001  # FluidSynth played both parts live


@pytest.mark.parametrize("args, says", [
    (["--in-file", "x.mid"], "needs --checkpoint"),
    (["--checkpoint", "assets/checkpoints/default"], "one of --in PORT or --in-file"),
    (["--checkpoint", "assets/checkpoints/default", "--in-file", "README.md", "--audio-driver", "file",
      "--audio-file", "/dev/null"], "README.md"),
    (["--checkpoint", "assets/checkpoints/default", "--in-file", "x.mid", "--pause", "0"], "pause must be"),
])
def test_terminal_duet_refuses_bad_input_in_one_line(args: list[str], says: str) -> None:
    done = subprocess.run([sys.executable, "-m", "comagen", "duet", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and says in errors[0], done.stderr
