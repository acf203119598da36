"""MAESTRO index, the token cache, training crops and evaluation windows, on real files."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from comagen.bundle.composers import Composers
from comagen.errors import DatasetError
from comagen.music.tokenizer import PianoTokenizer, TokenSettings
from comagen.training.data import (
    Augment,
    CropDataset,
    load_index,
    load_tokenized,
    select_split,
    tokenize_pieces,
)
from comagen.training.evaluate import eval_windows

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tokenizer() -> PianoTokenizer:
    return PianoTokenizer()


@pytest.fixture(scope="module")
def small_set(maestro_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    pieces = sorted(select_split(load_index(maestro_dir), "validation"), key=lambda p: p.duration)[:4]
    cache = tmp_path_factory.mktemp("cache")
    return pieces, cache


def test_index_matches_maestro_v3(maestro_dir: Path) -> None:
    pieces = load_index(maestro_dir)
    counts = {s: sum(p.split == s for p in pieces) for s in ("train", "validation", "test")}
    assert counts == {"train": 962, "validation": 137, "test": 177}
    composers = Composers.from_pieces(pieces)
    assert len(composers) == 61 and composers.names[0] == "<none>"
    assert composers.names[composers.find("chopin")] == "Frédéric Chopin"
    assert composers.id_of("nobody") == 0


def test_composers_round_trip(tmp_path: Path, maestro_dir: Path) -> None:
    composers = Composers.from_pieces(load_index(maestro_dir))
    composers.save(tmp_path / "composers.json")
    assert Composers.load(tmp_path / "composers.json").names == composers.names


def test_missing_folder_and_csv(tmp_path: Path) -> None:
    with pytest.raises(DatasetError):
        load_index(tmp_path / "absent")
    with pytest.raises(DatasetError):
        load_index(tmp_path)  # neither CSV nor MIDI files


def test_cache_skips_bad_files_and_rebuilds_on_new_settings(small_set, tokenizer: PianoTokenizer,
                                                             tmp_path: Path) -> None:
    pieces, _ = small_set
    folder = tmp_path / "midi"
    folder.mkdir()
    for p in pieces[:2]:
        shutil.copy(p.path, folder / p.path.name)
    (folder / "broken.mid").write_bytes(b"MThd\x00\x00\x00\x06garbage")
    (folder / "text.midi").write_text("not a midi file")
    loose = load_index(folder)
    assert len(loose) == 4 and {p.split for p in loose} == {"all"}
    report = tokenize_pieces(loose, tokenizer, tmp_path / "cache", workers=1, progress=False)
    assert report.done == 4 and len(report.failed) == 2 and report.notes > 0
    again = tokenize_pieces(loose, tokenizer, tmp_path / "cache", workers=1, progress=False)
    assert again.cached == 2 and again.done == 2  # only the bad ones are retried
    other = PianoTokenizer(TokenSettings(positions_per_beat=12))
    rebuilt = tokenize_pieces(loose, other, tmp_path / "cache", workers=1, progress=False)
    assert rebuilt.cache_dir != report.cache_dir and rebuilt.done == 4
    assert rebuilt.tokens != report.tokens


def test_tokenize_cli_reports_and_continues(tmp_path: Path, small_set) -> None:
    pieces, _ = small_set
    folder = tmp_path / "midi"
    folder.mkdir()
    shutil.copy(pieces[0].path, folder / pieces[0].path.name)
    (folder / "empty.mid").write_bytes(b"")
    proc = subprocess.run([sys.executable, "-m", "comagen", "tokenize", "--data", str(folder), "--cache",
                           str(tmp_path / "c"), "--json", "--quiet"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["files"] == 2 and len(result["failed"]) == 1 and result["notes"] > 0
    assert "empty.mid" in proc.stderr and "Traceback" not in proc.stderr
    bad = subprocess.run([sys.executable, "-m", "comagen", "tokenize", "--data", str(tmp_path / "nope")],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode != 0 and bad.stderr.startswith("error:") and "Traceback" not in bad.stderr


def _dataset(small_set, tokenizer, **kw) -> CropDataset:
    pieces, cache = small_set
    data = load_tokenized(pieces, tokenizer, cache, progress=False)
    return CropDataset(data, tokenizer, Composers.from_pieces(pieces), seq_len=256, **kw)


def test_crops_shapes_masks_and_determinism(small_set, tokenizer: PianoTokenizer) -> None:
    ds = _dataset(small_set, tokenizer, seed=3, augment=Augment(transpose=3, velocity=2))
    item = ds[5]
    assert item["input"].shape == item["target"].shape == item["mask"].shape == (256,)
    assert torch.equal(item["input"][1:], item["target"][:-1])
    assert int(item["composer"]) > 0
    assert all(torch.equal(ds[5][k], item[k]) for k in item)
    assert not torch.equal(ds[6]["input"], item["input"])
    assert not torch.equal(_dataset(small_set, tokenizer, seed=4)[5]["input"], item["input"])
    texts = [tokenizer.token_text(int(i)) for i in ds[7]["input"]]
    pitches = [int(t.split("_")[1]) for t in texts if t.startswith("Pitch_")]
    assert pitches and min(pitches) >= 21 and max(pitches) <= 108


def test_short_piece_is_padded_and_masked(small_set, tokenizer: PianoTokenizer) -> None:
    pieces, cache = small_set
    data = load_tokenized(pieces[:1], tokenizer, cache, progress=False)
    data[0].ids = data[0].ids[:100]
    ds = CropDataset(data, tokenizer, Composers.from_pieces(pieces), seq_len=256, seed=0)
    item = ds[0]
    assert int(item["input"][0]) == tokenizer.bos_id
    assert item["mask"].sum() == 101  # 100 tokens + EOS are targets, the rest is padding
    assert int(item["target"][100]) == tokenizer.eos_id and int(item["target"][101]) == tokenizer.pad_id


def test_stretch_augmentation_changes_timing(small_set, tokenizer: PianoTokenizer) -> None:
    ds = _dataset(small_set, tokenizer, seed=1, augment=Augment(stretch=0.2))
    plain = _dataset(small_set, tokenizer, seed=1)
    item = ds[2]
    assert item["input"].shape == (256,) and torch.equal(ds[2]["input"], item["input"])
    assert not torch.equal(item["input"], plain[2]["input"])


def test_eval_windows_score_every_token_once(tokenizer: PianoTokenizer) -> None:
    ids = np.arange(10, 10 + 1000) % 300 + 4
    windows = list(eval_windows(ids, tokenizer, seq_len=256, stride=128))
    assert sum(int(w["mask"].sum()) for w in windows) == len(ids) + 1  # every token + EOS
    assert all(w["input"].shape[0] <= 256 for w in windows)
    assert int(windows[0]["input"][0]) == tokenizer.bos_id


def test_several_processes_build_one_cache_at_once(validation_files: list[Path], tmp_path: Path) -> None:
    """Three `tokenize` runs start together on one empty cache: all succeed with one set of files."""
    folder = tmp_path / "midi"
    folder.mkdir()
    for path in validation_files[:4]:
        (folder / path.name).symlink_to(path)
    cache = tmp_path / "cache"
    cmd = [sys.executable, "-m", "comagen", "tokenize", "--data", str(folder), "--cache", str(cache),
           "--workers", "1", "--quiet", "--json"]
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    outputs = [p.communicate(timeout=300) for p in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err[-2000:]
    reports = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    assert sorted(r["tokenized"] for r in reports) == [0, 0, 4]  # one built, the others waited and reused it
    assert len({(r["notes"], r["tokens"], r["cache_dir"]) for r in reports}) == 1
    built = Path(reports[0]["cache_dir"])
    assert sorted(p.name for p in built.iterdir() if not p.name.startswith(".")) == sorted(
        [f"{p.stem}.npy" for p in validation_files[:4]] + ["manifest.json", "tokenizer.json"])
    assert not list(built.glob("*.tmp")) and not list(built.glob(".*.tmp"))
