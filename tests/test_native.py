"""The compiled engine (comagen.native): built here with the system compiler, it draws, leans and writes the
rings exactly as the numpy path it replaces, and without a compiler the engine runs on numpy with one line
saying why."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from comagen import native
from comagen.bundle.checkpoint import load_bundle
from comagen.generation.leans import Leans
from comagen.generation.prompt import load_prompt
from comagen.generation.request import Request
from comagen.generation.sampling import Sampling, sample_rows
from comagen.generation.session import generate
from comagen.generation.settings import bundle_settings
from comagen.music.grammar import RemiGrammar, track

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def numpy_path(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201 - a function that runs its argument on numpy
    """Run a callable with the compiled engine switched off (the reference path), then on again."""
    def run(call):  # noqa: ANN001, ANN202
        with monkeypatch.context() as m:
            m.setattr(native, "LIB", None)
            return call()
    return run


def test_the_compiled_engine_is_built_on_this_machine() -> None:
    assert native.LIB is not None, native.WHY_NOT
    assert native.build().parent == native.cache_folder()


@pytest.mark.parametrize("temperature", [1.0, 0.7, 0.0])
def test_the_compiled_draw_is_the_numpy_draw(temperature: float, numpy_path) -> None:  # noqa: ANN001
    rng = np.random.default_rng(0)
    logits = (rng.normal(size=(500, 300)) * 3).astype(np.float32)
    allowed = rng.random((500, 300)) > 0.5
    allowed[:, 11] = True
    uniform = np.concatenate([[0.0, 1 - 1e-16], rng.random(498)])
    factors = rng.uniform(0.5, 2.0, 500)
    sampling = Sampling(temperature=temperature)
    for f in (None, factors) if temperature else (None,):
        compiled = sample_rows(logits, allowed, sampling, uniform, f)
        reference = numpy_path(lambda f=f: sample_rows(logits, allowed, sampling, uniform, f))
        same = (compiled == reference).mean()
        assert same == 1.0 if f is None else same > 0.99  # factors: numpy divides in float64, C in float32
        assert allowed[np.arange(500), compiled].all()


def test_the_compiled_leans_are_the_numpy_leans(default_bundle, default_prompt, numpy_path) -> None:  # noqa: ANN001
    """Every lean on at once, on the real model's logits at every grammar state of a real continuation."""
    grammar = RemiGrammar(default_bundle.tokenizer)
    sampling = Sampling(key_strength=0.5, register_strength=1.0, density_strength=0.5, dynamics_strength=0.3)
    session = generate(default_bundle, default_prompt, Request(max_tokens=160, seed=1, sampling=sampling))
    rng = np.random.default_rng(1)
    states, ids = [track(grammar, default_prompt.ids)], default_prompt.ids + session.generated()
    for token in session.generated():
        states.append(states[-1].advance(grammar, token))
    compiled_leans = Leans(grammar, default_prompt.ids, 2, sampling)
    reference_leans = numpy_path(lambda: Leans(grammar, default_prompt.ids, 2, sampling))
    assert compiled_leans._span is not None and reference_leans._span is None
    for i, state in enumerate(states[:-1]):
        logits = (rng.normal(size=(2, len(grammar.kind))) * 4).astype(np.float32)
        allowed = np.stack([state.allowed_row(grammar)] * 2)
        got = compiled_leans.leaned(logits, allowed, [state, state])
        want = numpy_path(lambda a=logits, b=allowed, s=state: reference_leans.leaned(a, b, [s, s]))
        assert (got is None) == (want is None)
        if got is not None:
            assert np.array_equal(np.isinf(got), np.isinf(want))
            assert np.allclose(got[np.isfinite(got)], want[np.isfinite(want)], rtol=0, atol=1e-5)
        token = ids[len(default_prompt.ids) + i]
        for leans in (compiled_leans, reference_leans):
            leans.played(0, token, state)


@pytest.mark.parametrize("name", ["default", "flagship"])
def test_the_compiled_engine_plays_the_numpy_engines_music(name: str, validation_files, numpy_path) -> None:  # noqa: ANN001
    """The whole engine, int8 ring runtime and tuned leans, two variations: the same tokens either way
    (the ring writes, the leans and the draw all took part)."""
    bundle = load_bundle(ROOT / "assets" / "checkpoints" / name)
    prompt = load_prompt(bundle.tokenizer, validation_files[0], seconds=8)
    request = Request(max_tokens=300, seed=5, variations=2, sampling=bundle_settings(bundle).sampling())
    compiled = generate(bundle, prompt, request)
    reference = numpy_path(lambda: generate(bundle, prompt, request))
    assert compiled.runtime.name == "onnx-int8"
    assert [compiled.generated(r) for r in range(2)] == [reference.generated(r) for r in range(2)]


def test_without_a_compiler_the_engine_runs_on_numpy_and_says_why(tmp_path: Path) -> None:
    env = {**os.environ, "CC": str(tmp_path / "no-such-cc"), "COMAGEN_CACHE": str(tmp_path)}
    code = ("from comagen import native; import numpy as np; from comagen.generation.sampling import Sampling, "
            "sample_rows; print(native.LIB is None, native.WHY_NOT); "
            "print(sample_rows(np.zeros((1, 5), np.float32), np.ones((1, 5), bool), Sampling(), np.array([0.5])))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.splitlines()
    assert first.startswith("True no compiled engine") and "no-such-cc" in first
    assert second == "[2]"


def test_a_deep_copy_of_the_leans_reads_its_own_arrays(default_bundle, default_prompt, numpy_path) -> None:  # noqa: ANN001
    """The duet deep-copies a generation's leans and drops the original: every address the compiled calls
    use must then point into the copy's arrays, or they dangle (the app once crashed this way)."""
    import copy
    import gc

    grammar = RemiGrammar(default_bundle.tokenizer)
    sampling = Sampling(key_strength=0.5, register_strength=1.0, density_strength=0.5, dynamics_strength=0.3)
    states = [track(grammar, default_prompt.ids)]
    session = generate(default_bundle, default_prompt, Request(max_tokens=80, seed=1, sampling=sampling))
    for token in session.generated():
        states.append(states[-1].advance(grammar, token))
    rng = np.random.default_rng(2)
    logits = [(rng.normal(size=(1, len(grammar.kind))) * 4).astype(np.float32) for _ in states]
    original = Leans(grammar, default_prompt.ids, 1, sampling)
    played = session.generated()
    for state, row, token in zip(states[:40], logits, played, strict=False):  # fill its caches first
        original.leaned(row, state.allowed_row(grammar)[None], [state])
        original.played(0, token, state)
    original._pitch_lean(), original.density.class_p()  # both caches full when it is copied
    twin = copy.deepcopy(original, {id(grammar): grammar})
    del original
    gc.collect()
    _ = [np.full(4096, 7.0) for _ in range(64)]  # reuse the freed memory
    density, leans = twin.density, twin
    assert density._fixed[0] == density.ids.ctypes.data and density._gap_fixed[0] == density.bin_of.ctypes.data
    assert density._rows_at[0] == density._p[1].ctypes.data and leans._pitch_at[0] == leans._pitch[0].ctypes.data
    assert twin.register.histogram._kernel_at == twin.register.histogram.kernel.ctypes.data
    assert twin.dynamics._velocity_at == twin.dynamics.velocity_ids.ctypes.data
    reference = numpy_path(lambda: Leans(grammar, default_prompt.ids, 1, sampling))
    for i, (state, row) in enumerate(zip(states[:-1], logits, strict=False)):
        allowed = state.allowed_row(grammar)[None]
        got = twin.leaned(row, allowed, [state]) if i >= 40 else None
        want = numpy_path(lambda r=row, a=allowed, s=state: reference.leaned(r, a, [s]))
        if i >= 40 and got is not None:  # the copy picks up where the original stopped
            assert np.allclose(got[np.isfinite(got)], want[np.isfinite(want)], rtol=0, atol=1e-5)
        for leaned in (twin, reference) if i >= 40 else (reference,):
            leaned.played(0, played[i], state)
