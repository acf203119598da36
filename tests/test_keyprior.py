"""The key-aware pitch prior and the per-checkpoint sampling defaults (sampling.json)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from comagen.bundle.checkpoint import FILES, load_bundle
from comagen.cli import build_parser, main
from comagen.errors import CheckpointError, ConfigError
from comagen.generation.keyprior import KeyPrior
from comagen.generation.leans import Leans
from comagen.generation.prompt import load_prompt
from comagen.generation.request import Request
from comagen.generation.sampling import Sampling
from comagen.generation.session import Session, generate
from comagen.generation.settings import bundle_settings, settings_from_cli, tuned_settings
from comagen.music.grammar import RemiGrammar, track
from comagen.runtime import choose_runtime
from comagen.runtime.export import export_bundle

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "assets" / "checkpoints" / "default"


def pitch_class_histogram(grammar: RemiGrammar, ids: list[int]) -> np.ndarray:
    classes = [grammar.value[t] % 12 for t in ids if grammar.kind[t] == "Pitch"]
    return np.bincount(classes, minlength=12).astype(float)


def model_logits(bundle, prompt) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: ANN001
    """The real model's next-token logits after the prompt, and what the grammar allows there."""
    grammar = RemiGrammar(bundle.tokenizer)
    with torch.inference_mode():
        stream = choose_runtime(bundle, "torch", None).open(torch.tensor([0]))
        logits = stream.prefill(np.array([[bundle.tokenizer.bos_id, *prompt.ids]]))
    return torch.from_numpy(logits), track(grammar, prompt.ids).allowed(grammar)[None]


def test_the_prior_moves_pitch_probability_into_the_prompts_key(default_bundle, default_prompt) -> None:  # noqa: ANN001
    grammar = RemiGrammar(default_bundle.tokenizer)
    logits, allowed = model_logits(default_bundle, default_prompt)
    assert allowed[0, list(grammar.pitch_id.values())].any(), "the prompt should end where a pitch may follow"
    in_key = set(np.argsort(pitch_class_histogram(grammar, default_prompt.ids))[-7:].tolist())
    pitch_ids = [i for p, i in grammar.pitch_id.items() if grammar.kind[i] == "Pitch"]
    key_ids = [i for p, i in grammar.pitch_id.items() if grammar.kind[i] == "Pitch" and p % 12 in in_key]
    shares, masses = [], []
    for strength in (0.0, 1.0, 3.0):
        leans = Leans.maybe(grammar, default_prompt.ids, 1, Sampling(key_strength=strength))
        moved = leans.apply(logits, allowed, [track(grammar, default_prompt.ids)]) if leans else logits
        probs = torch.softmax(moved.masked_fill(~allowed, -torch.inf), -1)[0]
        shares.append(float(probs[key_ids].sum() / probs[pitch_ids].sum()))
        masses.append(float(probs[pitch_ids].sum()))
        others = [i for i in range(grammar.size) if i not in grammar.pitch_id.values()]
        assert torch.equal(moved[0, others], logits[0, others]), "only pitch logits may change"
    assert shares[0] < shares[1] < shares[2], shares
    assert shares[2] > 0.9
    assert np.allclose(masses, masses[0], atol=1e-5), "whether a pitch comes next must not change"


def test_strength_zero_is_exactly_the_old_distribution(default_bundle, default_prompt) -> None:  # noqa: ANN001
    grammar = RemiGrammar(default_bundle.tokenizer)
    logits, allowed = model_logits(default_bundle, default_prompt)
    assert Leans.maybe(grammar, default_prompt.ids, 1, Sampling(key_strength=0.0)) is None
    leans = Leans.maybe(grammar, default_prompt.ids, 1, Sampling(key_strength=0.1))
    assert not torch.equal(leans.apply(logits, allowed, [track(grammar, default_prompt.ids)]), logits)
    request = dict(max_tokens=200, seed=3)
    old = generate(default_bundle, default_prompt, Request(**request, sampling=Sampling(1.0, 0, 0.95)))
    zero = generate(default_bundle, default_prompt, Request(**request, sampling=Sampling(1.0, 0, 0.95, 0.0, 0.0)))
    assert zero.leans is None and old.generated(0) == zero.generated(0)


def test_each_row_counts_its_own_notes(default_bundle, default_prompt) -> None:  # noqa: ANN001
    grammar = RemiGrammar(default_bundle.tokenizer)
    prior = KeyPrior(grammar, default_prompt.ids, 2, 1.0)
    before = prior.histogram.counts.copy()
    prior.played(1, grammar.pitch_id[61])
    prior.played(1, grammar.bar_id)
    assert np.array_equal(prior.histogram.counts[0], before[0])
    assert prior.histogram.counts[1, 1] == pytest.approx(before[1, 1] * prior.histogram.decay + 1.0)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """A copy of the default bundle with a fresh fp32 ONNX step (the sampler sees only its logits)."""
    path = tmp_path_factory.mktemp("exported") / "default"
    shutil.copytree(DEFAULT, path, ignore=shutil.ignore_patterns("runtime"))
    export_bundle(load_bundle(path), measure_steps=0)
    return load_bundle(path)


@pytest.mark.parametrize("runtime", ["torch", "onnx"])
def test_strong_prior_keeps_variations_in_key_with_guidance_and_forms(default_bundle, exported, default_prompt,  # noqa: ANN001
                                                                       runtime: str) -> None:
    default_bundle = exported if runtime == "onnx" else default_bundle
    grammar = RemiGrammar(default_bundle.tokenizer)
    target = pitch_class_histogram(grammar, default_prompt.ids)
    kept = {}
    for strength in (0.0, 3.0):
        request = Request(max_tokens=2000, seed=1, variations=2, composer=1, guidance=2.0, form="AB",
                          section_bars=2, runtime=runtime, sampling=Sampling(1.0, 0, 0.95, 0.0, strength))
        session = generate(default_bundle, default_prompt, request)
        assert session.runtime.name.startswith(runtime)
        for row in range(2):
            assert session.score(row).note_num() > 0  # still decodes
        kept[strength] = np.mean([np.corrcoef(target, pitch_class_histogram(grammar, session.generated(r)))[0, 1]
                                  for r in range(2)])
    assert kept[3.0] > kept[0.0] and kept[3.0] > 0.7, kept


def bundle_copy(tmp_path: Path, sampling: str | None, name: str = "tuned") -> Path:
    """The default bundle's files (its sampling.json left out) with `sampling` as its sampling.json."""
    folder = tmp_path / name
    folder.mkdir()
    for name in FILES:
        shutil.copy(DEFAULT / name, folder / name)
    if sampling is not None:
        (folder / "sampling.json").write_text(sampling)
    return folder


def test_bundle_defaults_reach_the_cli_settings(tmp_path: Path) -> None:
    folder = bundle_copy(tmp_path, json.dumps({"key_strength": 1.5, "top_p": 0.9}))
    tuned = load_bundle(folder).sampling
    assert tuned == {"key_strength": 1.5, "top_p": 0.9}
    base = ["generate", "--checkpoint", str(folder), "--out", str(tmp_path / "x.mid")]
    settings = settings_from_cli(build_parser().parse_args(base), tuned_settings(tuned))
    assert (settings.key_strength, settings.top_p, settings.temperature) == (1.5, 0.9, 1.0)
    given = settings_from_cli(build_parser().parse_args([*base, "--key-strength", "0", "--top-p", "1"]),
                              tuned_settings(tuned))
    assert (given.key_strength, given.top_p) == (0.0, 1.0)  # what the user types wins
    assert given.request(load_bundle(folder).composers, None, max_tokens=10).sampling.key_strength == 0.0
    assert main([*base, "--seconds", "2", "--json"]) == 0


def test_a_bundle_without_sampling_json_keeps_the_global_defaults(tmp_path: Path) -> None:
    folder = bundle_copy(tmp_path, None)
    bundle = load_bundle(folder)
    assert bundle.sampling == {}
    args = build_parser().parse_args(["generate", "--checkpoint", str(folder), "--out", str(tmp_path / "x.mid")])
    settings = settings_from_cli(args, bundle_settings(bundle))
    assert (settings.key_strength, settings.top_p, settings.temperature) == (0.0, 0.95, 1.0)
    assert Session(bundle, load_prompt(bundle.tokenizer, None), settings.request(
        bundle.composers, None, max_tokens=10)).leans is None


def test_tuned_windows_reach_the_cli_the_sliders_and_the_onnx_step(tmp_path: Path) -> None:
    """A bundle's streaming windows (sampling.json "windows", narrower than trained) are what a request
    runs at unless the user says otherwise, on the exported step, and where the app's sliders start."""
    import studio

    folder = bundle_copy(tmp_path, json.dumps({"windows": [16, 100]}))
    shutil.copytree(DEFAULT / "runtime", folder / "runtime")
    bundle = load_bundle(folder)
    base = ["generate", "--checkpoint", str(folder), "--out", str(tmp_path / "x.mid")]
    settings = settings_from_cli(build_parser().parse_args(base), bundle_settings(bundle))
    request = settings.request(bundle.composers, bundle.config.windows, max_tokens=10)
    assert request.windows == [16, 100]
    runtime = choose_runtime(bundle, "auto", windows=request.windows)
    assert runtime.name.startswith("onnx") and runtime.windows == [16, 100] and runtime.note is None
    given = settings_from_cli(build_parser().parse_args([*base, "--windows", "32,128"]), bundle_settings(bundle))
    assert given.request(bundle.composers, bundle.config.windows, max_tokens=10).windows is None  # as trained
    sliders = studio.window_sliders(bundle)
    assert [s["value"] for s in sliders[:2]] == [16, 100] and "trained 128" in sliders[1]["label"]


@pytest.mark.parametrize("text", ['{"key_strength": -1}', '{"colour": 1}', '{"dynamics_strength": 99}', '[1, 2]',
                                  '{"top_p": "high"}', '{"key_strength": true}', "{not json", '{"windows": [16.5, 64]}',
                                  '{"windows": "wide"}', '{"windows": [16, 100, 100]}'])
def test_a_bad_sampling_json_is_one_clear_line(tmp_path: Path, text: str, capsys: pytest.CaptureFixture) -> None:
    folder = bundle_copy(tmp_path, text)
    try:  # the bundle refuses what is not a table of numbers; generation what the numbers cannot mean
        err = str(bundle_settings(load_bundle(folder)))
    except (CheckpointError, ConfigError) as exc:
        err = str(exc)
    assert "sampling.json" in err and "\n" not in err
    assert main(["generate", "--checkpoint", str(folder), "--out", str(tmp_path / "x.mid")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "sampling.json" in lines[0]
    assert not (tmp_path / "x.mid").exists()


def test_the_apps_sliders_start_at_the_checkpoints_tuned_defaults(tmp_path: Path) -> None:
    import gradio as gr

    import app
    import studio

    tuned = load_bundle(bundle_copy(tmp_path, json.dumps({"key_strength": 1.5, "temperature": 0.9})))
    with gr.Blocks():
        controls = app.settings_controls(tuned, "main", studio.LIMITS)
        plain = app.settings_controls(load_bundle(bundle_copy(tmp_path, None, "plain")), "main", studio.LIMITS)
    assert (controls["key_strength"].value, controls["temperature"].value, controls["top_p"].value) == (1.5, 0.9, 0.95)
    assert plain["key_strength"].value == 0.0
    settings, _ = app.settings_from_values({k: c.value for k, c in controls.items()})
    assert settings.request(tuned.composers, None, max_tokens=10).sampling.key_strength == 1.5
