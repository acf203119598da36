"""Fine-tuning `default` on a user's folder: bad files named and skipped, a deterministic validation
split, the output a normal bundle that loads and generates, a card that names base and data, and
weights that moved."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from finetune_support import BASE, QUICK, Tuned, run_finetune, tuned_bundle, user_folder

from comagen.bundle.checkpoint import load_bundle
from comagen.generation.prompt import Prompt
from comagen.generation.request import Request
from comagen.generation.session import generate
from comagen.music.tokenizer import PianoTokenizer
from comagen.training.finetune import read_folder, split_validation
from comagen.training.progress import reachable_steps


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> Tuned:
    return tuned_bundle(tmp_path_factory.mktemp("finetune"))


def test_bad_files_are_named_once_and_skipped(tuned: Tuned) -> None:
    skipped = [line for line in tuned.stdout.splitlines() if line.startswith("skipped ")]
    assert len(skipped) == 2, tuned.stdout
    assert any(line.startswith("skipped broken.mid: the MIDI data is corrupt") for line in skipped)
    assert "skipped older/notes.mid: not a MIDI file" in tuned.stdout
    assert "readme.txt" not in tuned.stdout
    s = tuned.summary
    assert sorted(s["train_files"] + s["validation_files"]) == ["first.mid", "older/second.midi", "third.MID"]
    assert len(s["validation_files"]) == 1 and len(s["skipped"]) == 2
    assert f"validation on: {s['validation_files'][0]}" in tuned.stdout
    assert s["steps"] == 4


def test_output_is_a_bundle_that_loads_and_generates(tuned: Tuned) -> None:
    bundle = load_bundle(tuned.out)
    base = load_bundle(BASE)
    assert bundle.tokenizer.to_dict() == base.tokenizer.to_dict()
    assert bundle.composers.names == base.composers.names
    assert bundle.summary["finetuned_from"] == "default"
    session = generate(bundle, Prompt.empty(), Request(max_tokens=40, seed=1, runtime="torch"))
    assert session.generated() and session.score(with_prompt=False).note_num() > 0
    changed = [k for k, v in bundle.model.state_dict().items() if not torch.equal(v, base.model.state_dict()[k])]
    assert tuned.summary["improved"] and tuned.summary["after"] < tuned.summary["before"]
    assert len(changed) > 10


def test_model_card_names_base_data_and_before_after(tuned: Tuned) -> None:
    card = (tuned.out / "MODEL_CARD.md").read_text()
    assert "Base model: `default`" in card
    assert "folder `my pieces`: 2 file(s) trained on, 1 held out" in card and "2 skipped" in card
    assert f"before **{tuned.summary['before']:.3f}**, after **{tuned.summary['after']:.3f}**" in card
    assert "Steps: 4 in" in card
    for text in (card, (tuned.out / "config.json").read_text()):
        assert str(tuned.data.parent) not in text  # the folder's name only, never a machine's path
    assert "before" in tuned.stdout.splitlines()[-4] and "python app.py" in tuned.stdout


def test_validation_split_is_deterministic_and_one_file_splits_its_tail(tmp_path: Path) -> None:
    folder = user_folder(tmp_path)
    tokenizer = PianoTokenizer.load(BASE / "tokenizer.json")
    first = read_folder(folder, tokenizer, progress=False, report=lambda line: None)
    again = read_folder(folder, tokenizer, progress=False, report=lambda line: None)
    pick = [p.piece.title for p in split_validation(first.pieces, tokenizer)[1]]
    assert pick == [p.piece.title for p in split_validation(again.pieces, tokenizer)[1]]
    lone = first.pieces[0]
    train, held = split_validation([lone], tokenizer)
    assert len(train[0].ids) + len(held[0].ids) == len(lone.ids)
    assert 0.6 < len(train[0].ids) / len(lone.ids) < 0.95
    assert held[0].ids[0] == tokenizer.bar_id


def test_folder_without_usable_files_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "junk"
    bad.mkdir()
    (bad / "a.mid").write_bytes(b"")
    (bad / "b.midi").write_text("hello")
    proc = run_finetune(bad, tmp_path / "out", *QUICK)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and lines[-1].endswith(
        "junk: none of its 2 MIDI file(s) is usable (see the lines above)"), proc.stderr
    assert "Traceback" not in proc.stderr
    assert "skipped a.mid: the file is empty" in proc.stdout
    assert not (tmp_path / "out").exists()


def test_out_that_is_not_a_bundle_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    out = tmp_path / "precious"
    out.mkdir()
    (out / "thesis.txt").write_text("keep me")
    proc = run_finetune(folder, out, *QUICK)
    assert proc.returncode == 2
    assert "exists and is not a checkpoint bundle" in proc.stderr.strip().splitlines()[-1]
    assert (out / "thesis.txt").read_text() == "keep me"


def test_a_run_stopped_by_the_clock_is_scored_where_it_stopped(tmp_path: Path) -> None:
    out = tmp_path / "clocked"
    proc = run_finetune(user_folder(tmp_path), out, "--seq-len", "128", "--batch-size", "2", "--threads", "2",
                        "--eval-every", "1000", "--steps", "1000", "--minutes", "0.05")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "(stopped by the clock): val bits/note" in proc.stdout  # no evaluation was due before the clock ran out
    steps = int(re.search(r"\((\d+) steps, ", proc.stdout).group(1))
    last = [frame for frame in re.split(r"[\r\n]", proc.stderr) if frame.startswith("training")][-1]
    assert last.startswith("training (0.05 min budget): 100%") and f"| {steps}/{steps} [" in last, last
    card = (out / "MODEL_CARD.md").read_text()
    assert "stopped by max_minutes" in card


def test_the_bar_aims_at_the_step_the_budget_allows() -> None:
    assert reachable_steps(10, 10, elapsed_s=5.0, left_s=5.0, max_steps=1000) == 20  # same pace to the end
    assert reachable_steps(10, 4, elapsed_s=2.0, left_s=0.1, max_steps=1000) == 11  # a started step counts
    assert reachable_steps(10, 10, elapsed_s=1.0, left_s=100.0, max_steps=50) == 50  # the cap comes first
    assert reachable_steps(10, 10, elapsed_s=5.0, left_s=-1.0, max_steps=1000) == 10  # the budget is spent
    assert reachable_steps(0, 0, elapsed_s=0.0, left_s=60.0, max_steps=1000) == 1000  # no pace yet
