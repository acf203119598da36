"""Untrusted files: a checkpoint from anyone never runs code, never reads outside its folder, and any
malformed part is one CheckpointError line; an upload's file name never becomes a path."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch

import studio
from comagen.bundle.checkpoint import Bundle, load_bundle, load_trainer_state, save_bundle
from comagen.bundle.composers import Composers
from comagen.errors import CheckpointError, MidiError
from comagen.generation.prompt import load_prompt
from comagen.model import ModelConfig, build_model
from comagen.music.tokenizer import PianoTokenizer


class Plant:
    """Unpickling this runs code: it writes `marker`. Proof that a loader did unpickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return exec, (f"open({str(self.marker)!r}, 'w').write('code ran')",)


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny real bundle (random weights) with a trainer.pt, written by the project's save_bundle."""
    tokenizer = PianoTokenizer()
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=tokenizer.vocab_size, pad_id=tokenizer.pad_id, dim=32, depth=2, heads=2,
                      windows=[8, 16], conv_kernel=5, ff_mult=2, dropout=0.0, max_seq_len=64)
    return save_bundle(tmp_path_factory.mktemp("untrusted") / "good", build_model(cfg), tokenizer,
                       Composers(["Chopin", "Satie"]), trainer_state={"step": 3, "rng": torch.arange(4)})


@pytest.fixture
def bundle(good: Path, tmp_path: Path) -> Path:
    """A fresh copy of the good bundle to spoil."""
    return Path(shutil.copytree(good, tmp_path / "bundle"))


def _refused(folder: Path, match: str | None = None) -> str:
    """load_bundle's error, which must be one CheckpointError line (any other type fails the test)."""
    with pytest.raises(CheckpointError, match=match) as info:
        load_bundle(folder)
    assert "\n" not in str(info.value) and str(folder) in str(info.value)
    return str(info.value)


def test_the_good_bundle_loads(good: Path) -> None:
    loaded = load_bundle(good)
    assert loaded.config.dim == 32 and loaded.composers.names[1:] == ["Chopin", "Satie"]
    assert load_trainer_state(good)["step"] == 3


# ------------------------------------------------------------------------------ code execution


def test_pickled_code_in_trainer_pt_is_refused_and_never_runs(bundle: Path, tmp_path: Path) -> None:
    proof = tmp_path / "proof"
    pickle.loads(pickle.dumps(Plant(proof)))  # the payload is real: plain unpickling runs it
    assert proof.read_text() == "code ran"

    marker = tmp_path / "marker"
    torch.save({"step": 1, "optimizer": Plant(marker)}, bundle / "trainer.pt")
    with pytest.raises(CheckpointError, match="unreadable training state") as info:
        load_trainer_state(bundle)
    assert "\n" not in str(info.value)
    assert not marker.exists()


def test_a_pickle_posing_as_weights_is_refused_and_never_runs(bundle: Path, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    torch.save({"token_emb.weight": Plant(marker)}, bundle / "model.safetensors")
    _refused(bundle, "model.safetensors")
    assert not marker.exists()


# ------------------------------------------------------------------------------ config.json


def _set(path: list[str], value: object):
    def spoil(config: dict) -> object:
        node = config
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        return config
    return spoil


@pytest.mark.parametrize("spoil", [
    _set(["model", "dim"], "abc"),
    _set(["model", "windows"], "x"),
    _set(["model", "windows"], [[{"a": [1, None]}]]),
    _set(["model", "dropout"], "abc"),
    _set(["model", "global_layers"], 5),
    _set(["model", "heads"], None),
    _set(["model", "arch"], ["conformer"]),
    _set(["model", "surprise"], 1),
    _set(["model"], [1, 2, 3]),
    _set(["model"], "conformer"),
    _set(["summary"], "not an object"),
    _set(["model", "dim"], 4096),  # well-typed, but not the weights' shape
    _set(["model", "depth"], 10**9),  # would take forever to build: refused on the weights' header
    _set(["model", "vocab_size"], 10**6),  # tokenizer and weights disagree
    lambda config: [config],
    lambda config: None,
], ids=["dim-str", "windows-str", "windows-nested", "dropout-str", "global-int", "heads-null", "arch-list",
        "unknown-key", "model-list", "model-str", "summary-str", "dim-huge", "depth-huge", "vocab-huge",
        "top-list", "top-null"])
def test_config_with_unexpected_types_is_one_checkpoint_error(bundle: Path, spoil) -> None:
    file = bundle / "config.json"
    file.write_text(json.dumps(spoil(json.loads(file.read_text()))))
    _refused(bundle)


@pytest.mark.parametrize("raw", [b"{{{", b"\xff\xfe\x00garbage", b"[" * 100_000 + b"]" * 100_000, b""],
                         ids=["not-json", "not-utf8", "nested-deep", "empty"])
def test_config_that_is_not_json_is_one_checkpoint_error(bundle: Path, raw: bytes) -> None:
    (bundle / "config.json").write_bytes(raw)
    assert "config.json" in _refused(bundle)


# ------------------------------------------------------------------------------ tokenizer and composers


@pytest.mark.parametrize("spoil", [
    lambda t: {**t, "remi": {"config": "garbage"}},
    lambda t: {**t, "remi": "not an object"},
    lambda t: {**t, "remi": {**t["remi"], "config": {**t["remi"]["config"], "pitch_range": "wide"}}},
    lambda t: {**t, "settings": {"positions_per_beat": "many"}},
    lambda t: {**t, "settings": {"no_such_setting": 1}},
    lambda t: {"settings": t["settings"]},
    lambda t: [t],
    lambda t: {**t, "settings": {**t["settings"], "num_velocities": 8},
               "remi": PianoTokenizer(type(PianoTokenizer().settings)(num_velocities=8)).to_dict()["remi"]},
], ids=["remi-garbage", "remi-str", "remi-pitch-range", "settings-type", "settings-key", "no-remi", "list",
        "other-vocabulary"])
def test_tokenizer_that_miditok_rejects_is_one_checkpoint_error(bundle: Path, spoil) -> None:
    file = bundle / "tokenizer.json"
    file.write_text(json.dumps(spoil(json.loads(file.read_text()))))
    assert "tokenizer.json" in _refused(bundle) or "do not fit the model" in _refused(bundle)


@pytest.mark.parametrize("table", [[], {"0": 5}, {"1": "x"}, "names", {"0": "<none>", "1": ["nested"]}])
def test_composers_file_garbage_is_one_checkpoint_error(bundle: Path, table: object) -> None:
    (bundle / "composers.json").write_text(json.dumps(table))
    assert "composers.json" in _refused(bundle)


# ------------------------------------------------------------------------------ symlinks


@pytest.mark.parametrize("name", ["model.safetensors", "config.json", "tokenizer.json", "composers.json"])
def test_a_symlink_leading_out_of_the_bundle_is_refused_even_to_a_valid_file(bundle: Path, good: Path,
                                                                            tmp_path: Path, name: str) -> None:
    outside = tmp_path / "elsewhere" / name
    outside.parent.mkdir()
    shutil.copy(good / name, outside)  # a perfectly good file: only where it lives is wrong
    (bundle / name).unlink()
    (bundle / name).symlink_to(outside)
    assert "outside the checkpoint folder" in _refused(bundle, name)


def test_symlinks_to_system_files_and_relative_escapes_are_refused(bundle: Path, tmp_path: Path) -> None:
    (bundle / "model.safetensors").unlink()
    (bundle / "model.safetensors").symlink_to("/etc/passwd")
    _refused(bundle, "outside the checkpoint folder")
    (bundle / "model.safetensors").unlink()
    shutil.copy(bundle / "config.json", tmp_path / "model.safetensors")
    (bundle / "model.safetensors").symlink_to(Path("..") / "model.safetensors")
    _refused(bundle, "outside the checkpoint folder")


def test_trainer_pt_symlink_out_of_the_bundle_is_refused(bundle: Path, good: Path, tmp_path: Path) -> None:
    shutil.copy(good / "trainer.pt", tmp_path / "trainer.pt")
    (bundle / "trainer.pt").unlink()
    (bundle / "trainer.pt").symlink_to(tmp_path / "trainer.pt")
    with pytest.raises(CheckpointError, match="outside the checkpoint folder"):
        load_trainer_state(bundle)


def test_links_that_stay_inside_the_bundle_still_load(bundle: Path, tmp_path: Path) -> None:
    (bundle / "model.safetensors").rename(bundle / "weights-fp32.safetensors")
    (bundle / "model.safetensors").symlink_to("weights-fp32.safetensors")
    linked_folder = tmp_path / "linked"
    linked_folder.symlink_to(bundle)  # the folder itself may be a link (assets/checkpoints/default -> ...)
    assert load_bundle(linked_folder).config.dim == 32


# ------------------------------------------------------------------------------ upload names


@pytest.fixture(scope="module")
def loaded(good: Path) -> Bundle:
    return load_bundle(good)


@pytest.mark.parametrize("name", ["../../../escape", "/etc/escape", "..", "a/../../b\\..\\c", "é" * 300,
                                  "x" * 400, "con\x00nul"])
def test_result_files_stay_in_their_folder_whatever_the_upload_was_called(
        loaded: Bundle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setattr(studio.outfiles, "OUT_ROOT", tmp_path / "out")
    prompt = load_prompt(loaded.tokenizer, studio.PROMPTS_DIR / "satie_gymnopedie_1.mid", 2)
    (result,) = studio.render_take(loaded, studio.Take(prompt, [[]], 7, 0, None, name))
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written and all((tmp_path / "out") in p.parents for p in written)
    assert result.midi.parent.parent == tmp_path / "out" and ".." not in result.midi.name
    assert len(result.midi.name.encode()) < 255


def test_an_upload_is_named_by_its_last_part_only(loaded: Bundle, tmp_path: Path) -> None:
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    upload = nested / ".." / "b" / "..mid"  # a dotted name, reached through '..'
    upload.write_bytes((studio.PROMPTS_DIR / "satie_gymnopedie_1.mid").read_bytes())
    prompt, name = studio.resolve_prompt(loaded, upload, studio.build_gallery(), None, 4)
    assert prompt.ids and name == "."
    broken = nested / "..mid"
    broken.write_bytes(b"MThd broken")
    with pytest.raises(MidiError) as info:
        studio.resolve_prompt(loaded, broken, {}, None, 4)
    assert str(info.value).startswith("..mid: ") and os.sep not in str(info.value).split(":")[0]


def test_checking_a_bundles_shapes_builds_its_skeleton_without_torchs_compiler() -> None:
    """The shape check builds the model on the meta device; meta's random fills, eye and one_hot import
    torch's compiler, a second of every process that loads a bundle. Both shipped token bundles load
    without it, and with the weights of their own files."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    code = ("import sys; from comagen.bundle.checkpoint import load_bundle; "
            "b = [load_bundle(f'assets/checkpoints/{n}') for n in ('default', 'flagship')]; "
            "print('torch._dynamo' in sys.modules, [round(float(x.model.token_emb.weight.std()), 4) for x in b])")
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    imported, stds = out.stdout.split(" ", 1)
    assert imported == "False", out.stdout
    assert all(0 < s < 1 for s in json.loads(stds)), stds  # trained embeddings, not zeros or a fresh N(0, 1)
