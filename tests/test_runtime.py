"""The ONNX decode runtime: the exported step gives the torch step's logits, int8 stays on the grammar,
stale or damaged exports fall back to torch with a note, and the export CLI round-trips."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from comagen.bundle.checkpoint import Bundle, load_bundle, save_bundle
from comagen.bundle.composers import Composers
from comagen.cli import main as cli_main
from comagen.errors import CheckpointError, ConfigError
from comagen.generation.prompt import Prompt, load_prompt
from comagen.generation.request import Request
from comagen.generation.sampling import Sampling
from comagen.generation.session import generate
from comagen.model import ModelConfig, build_model
from comagen.music.grammar import RemiGrammar, track
from comagen.music.midi import load_score, midi_bytes
from comagen.music.tokenizer import PianoTokenizer
from comagen.runtime import choose_runtime
from comagen.runtime.export import export_bundle
from comagen.runtime.manifest import FORMAT, ExportRecord

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "assets" / "checkpoints" / "default"


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "comagen", *args], capture_output=True, text=True, cwd=ROOT)


def _tiny(tmp: Path, seed: int = 0, **overrides: object) -> Path:
    """A small random conformer bundle with dpb positions and 2 hyper-streams (the paths default lacks),
    saved in bf16 like the flagship."""
    tokenizer = PianoTokenizer()
    torch.manual_seed(seed)
    cfg = ModelConfig(vocab_size=tokenizer.vocab_size, pad_id=tokenizer.pad_id, dim=64, depth=1, heads=2,
                      windows=[8, 32], conv_kernel=7, ff_mult=2, dropout=0.0, max_seq_len=256, position="dpb",
                      hyper_streams=2, **overrides)
    model = build_model(cfg).eval()
    with torch.no_grad():  # larger weights than the init, so context matters as in a trained model
        for name, param in model.named_parameters():
            if param.dim() == 2:
                param.normal_(0.0, 1.0 if "emb" in name else 2.0 / param.shape[1] ** 0.5)
    return save_bundle(tmp, model, tokenizer, Composers(["Bach", "Chopin", "Liszt"]), dtype=torch.bfloat16)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny bundle, exported (fp32 + int8) through the CLI."""
    path = _tiny(tmp_path_factory.mktemp("tiny") / "ckpt")
    proc = _cli("export", "--checkpoint", str(path), "--int8", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["files"] == ["step.onnx", "step.int8.onnx"] and result["windows"] == [8, 32]
    assert set(result["step_ms"]) == {"torch", "fp32", "int8"} and result["opset"] >= 17
    assert result["prefer"] in result["step_ms"]
    assert proc.stderr.strip() == ""  # the exporter's narration is kept off the terminal
    graph = onnx.load(path / "runtime" / "step.onnx").graph
    assert {t.data_type for t in graph.initializer} <= {onnx.TensorProto.FLOAT, onnx.TensorProto.INT64}  # bf16 widened
    return path


@pytest.fixture(scope="module")
def default(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the shipped default bundle with a fresh fp32 export (no timing: only numbers matter)."""
    path = tmp_path_factory.mktemp("default") / "ckpt"
    shutil.copytree(DEFAULT, path, ignore=shutil.ignore_patterns("runtime"))
    export_bundle(load_bundle(path), measure_steps=0)
    return path


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize(("which", "windows"), [("tiny", None), ("default", None), ("tiny", [3, 20]),
                                                ("default", [16, 100])])
def test_fp32_step_matches_torch(which: str, windows: list[int] | None, request: pytest.FixtureRequest,
                                 validation_files: list[Path]) -> None:
    """300 greedy steps after a real prompt, conditional and unconditional rows as one batch of 2,
    through the window's filling (default: 128), past it and past the rings' re-basing (every 128
    steps for default's xpos keys): logits within 1e-4 of torch. The same file serves narrower windows
    (each ring's size is an axis of the graph), against torch at those windows."""
    bundle = load_bundle(request.getfixturevalue(which))
    onnx = choose_runtime(bundle, "onnx-fp32", windows=windows)
    assert onnx.name == "onnx-fp32" and onnx.note is None
    prompt = load_prompt(bundle.tokenizer, validation_files[1], seconds=2)
    tokens = np.array([[bundle.tokenizer.bos_id, *prompt.ids]] * 2)
    composers = torch.tensor([2, 0])
    keep = max(windows or bundle.config.windows) - 1
    assert tokens.shape[1] < keep < tokens.shape[1] + 100 or which == "tiny"  # default: fill the window, go past
    with torch.inference_mode():
        ref, got = choose_runtime(bundle, "torch", windows=windows).open(composers), onnx.open(composers)
        a, b = ref.prefill(tokens), got.prefill(tokens)
        assert np.array_equal(a, b)  # the prompt runs on torch for both
        worst = 0.0
        for _ in range(300):
            token = a.argmax(-1)
            a, b = ref.step(token), got.step(token)
            worst = max(worst, float(np.abs(a - b).max()))
    assert worst < 1e-4, worst


def test_window_filling_from_an_empty_prompt(tiny: Path) -> None:
    """Straight after BOS most of the window is empty: the mask must hide exactly those slots."""
    bundle = load_bundle(tiny)
    composers = torch.tensor([1])
    with torch.inference_mode():
        ref, got = choose_runtime(bundle, "torch").open(composers), choose_runtime(bundle, "onnx-fp32").open(composers)
        start = np.array([[bundle.tokenizer.bos_id]])
        a, b = ref.prefill(start), got.prefill(start)
        for t in range(40):
            a, b = ref.step(np.array([t + 5])), got.step(np.array([t + 5]))
            assert np.abs(a - b).max() < 1e-4, t

def test_step_moves_one_token_of_state(tiny: Path) -> None:
    """The step reads each scale's ring (W-1 slots, an axis of its own: any narrower window) in place and
    returns only the new token's key and value: no output is as wide as a window, so nothing
    window-sized is copied per token."""
    graph = onnx.load(tiny / "runtime" / "step.onnx").graph
    dims = {v.name: [d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim] for v in
            [*graph.input, *graph.output]}
    assert dims["keys0_0"][2] == dims["values0_0"][2] != dims["keys0_1"][2]  # one size per scale
    assert all(isinstance(dims[f"keys0_{s}"][2], str) for s in (0, 1))
    assert dims["keys0_next"][2] == 1 and dims["values0_next"][2] == 1
    assert dims["keys0_next"][1] == 2 * 2  # all scales' heads of the new token



def test_int8_generation_decodes_on_the_grammar(tiny: Path) -> None:
    bundle = load_bundle(tiny)
    grammar = RemiGrammar(bundle.tokenizer)
    session = generate(bundle, Prompt.empty(), Request(max_tokens=200, seconds=600, seed=3, variations=2,
                                                       composer=2, guidance=2.0, runtime="onnx-int8",
                                                       sampling=Sampling(temperature=1.5)))
    assert session.stats["runtime"] == "onnx-int8" and session.runtime.note is None
    for row in range(2):
        ids = session.generated(row)
        assert len(ids) >= 190
        state = track(grammar, [])
        for tok in ids:
            assert state.allowed(grammar)[tok], bundle.tokenizer.token_text(tok)
            state = state.advance(grammar, tok)
        assert load_score(midi_bytes(session.score(row))).note_num() > 0


def test_fp32_onnx_makes_the_same_music_as_torch(tiny: Path, validation_files: list[Path]) -> None:
    bundle = load_bundle(tiny)
    prompt = load_prompt(bundle.tokenizer, validation_files[0], seconds=4)
    req = dict(max_tokens=120, seed=5, sampling=Sampling(temperature=0.0))
    assert generate(bundle, prompt, Request(runtime="onnx-fp32", **req)).generated() == \
        generate(bundle, prompt, Request(runtime="torch", **req)).generated()


def test_auto_follows_the_measured_choice(tiny: Path, tmp_path: Path) -> None:
    path = _copy(tiny, tmp_path / "ckpt")
    record = ExportRecord.load(path / "runtime")
    for prefer, name in (("int8", "onnx-int8"), ("fp32", "onnx-fp32"), ("torch", "torch")):
        record.prefer = prefer
        record.save(path / "runtime")
        runtime = choose_runtime(load_bundle(path), "auto")
        assert runtime.name == name and runtime.note is None
    record.step_ms = {"torch": 1.0, "fp32": 3.0, "int8": 2.0}
    record.save(path / "runtime")
    assert choose_runtime(load_bundle(path), "onnx").name == "onnx-int8"  # the faster ONNX file


def test_bundle_without_export_runs_on_torch(tmp_path: Path) -> None:
    bundle = load_bundle(_tiny(tmp_path / "plain"))
    session = generate(bundle, Prompt.empty(), Request(max_tokens=20, seed=1))
    assert session.stats["runtime"] == "torch" and session.runtime.note is None
    assert len(session.generated()) >= 10
    with pytest.raises(ConfigError, match="no ONNX export"):
        generate(bundle, Prompt.empty(), Request(max_tokens=20, runtime="onnx"))
    with pytest.raises(ConfigError, match="unknown runtime"):
        Request(runtime="tensorrt")
    glob = load_bundle(_tiny(tmp_path / "glob", global_layers=[0]))
    with pytest.raises(ConfigError, match="global_layers"):
        export_bundle(glob)


def test_stale_or_damaged_export_falls_back_with_a_note(tiny: Path, tmp_path: Path) -> None:
    path = _copy(tiny, tmp_path / "ckpt")
    other = load_bundle(path)
    for windows in ([16, 64], [2, 16]):  # wider than trained; narrower than the export serves
        runtime = choose_runtime(other, "onnx", windows=windows)
        assert runtime.name == "torch" and f"windows {windows}" in runtime.note
    for windows in ([8, 32], [4, 16]):  # the trained ones, and narrower
        assert choose_runtime(other, "onnx", windows=windows).name.startswith("onnx")

    step = path / "runtime" / "step.onnx"
    data = step.read_bytes()
    step.write_bytes(data[: len(data) // 2])  # truncated
    runtime = choose_runtime(load_bundle(path), "onnx-fp32")
    assert runtime.name == "torch" and "damaged" in runtime.note and "\n" not in runtime.note
    session = generate(load_bundle(path), Prompt.empty(), Request(max_tokens=20, runtime="onnx-fp32"))
    assert session.stats["runtime"] == "torch" and len(session.generated()) >= 10

    step.write_bytes(b"not an onnx graph")  # a file that matches its recorded hash but does not load
    record = ExportRecord.load(path / "runtime")
    record.files["fp32"]["sha256"] = hashlib.sha256(b"not an onnx graph").hexdigest()
    record.save(path / "runtime")
    runtime = choose_runtime(load_bundle(path), "onnx-fp32")
    assert runtime.name == "torch" and "does not load" in runtime.note

    _tiny(path, seed=1)  # retrained weights (saving replaces the folder, export included) ...
    shutil.copytree(tiny / "runtime", path / "runtime")  # ... and the old weights' export put back
    runtime = choose_runtime(load_bundle(path), "auto")
    assert runtime.name == "torch" and "other weights" in runtime.note

    record = json.loads((path / "runtime" / "export.json").read_text())
    (path / "runtime" / "export.json").write_text(json.dumps({**record, "format": FORMAT - 1}))
    runtime = choose_runtime(load_bundle(path), "auto")  # an export of an older layout (its state as it was)
    assert runtime.name == "torch" and f"format {FORMAT - 1}" in runtime.note and "\n" not in runtime.note

    (path / "runtime" / "export.json").write_text("{not json")
    runtime = choose_runtime(load_bundle(path), "auto")
    assert runtime.name == "torch" and "unreadable" in runtime.note


def test_generate_cli_runtime_flag(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`generate --runtime` (in-process: the export CLI above already paid for a subprocess)."""
    out = str(tmp_path / "x.mid")
    assert cli_main(["generate", "--checkpoint", str(tiny), "--tokens", "60", "--runtime", "onnx-fp32",
                     "--out", out, "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["runtime"] == "onnx-fp32" and load_score(out).note_num() > 0
    assert cli_main(["generate", "--checkpoint", str(tiny), "--tokens", "20", "--windows", "16,64", "--out", out,
                     "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out.strip().splitlines()[-1])["runtime"] == "torch"
    assert captured.err.strip() == "note: the ONNX step serves windows from 3 up to the trained [8, 32]; " \
                                   "windows [16, 64] decode on torch"
    assert cli_main(["generate", "--checkpoint", str(tiny), "--runtime", "gpu", "--out", out]) == 2
    assert capsys.readouterr().err.strip().startswith("error: unknown runtime 'gpu'")


def test_export_needs_weights_on_disk(tmp_path: Path) -> None:
    """The record ties an export to the bundle's weights file, so a model only in memory is refused."""
    cfg = ModelConfig(vocab_size=PianoTokenizer().vocab_size, dim=32, depth=1, heads=2)
    bundle = Bundle(tmp_path, build_model(cfg), cfg, PianoTokenizer(), Composers([]))
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        export_bundle(bundle)


def test_weight_block_trial_files_stay_near_fp32(tiny: Path, tmp_path: Path) -> None:
    """The step bench's trial rows (Recipe.block_bits): the weights stored in blocks at 8 or 4 bits run
    in ONNX Runtime and give logits near the fp32 file's, 8 bits nearer than 4."""
    import onnxruntime as ort

    from comagen.runtime.export import Recipe, example_inputs, prepare
    from comagen.runtime.onnx_stream import session_options
    from comagen.runtime.step import StepFunction

    fp32 = tiny / "runtime" / "step.onnx"
    inputs = [t.numpy() for t in example_inputs(StepFunction(load_bundle(tiny).model).eval(), 1, seen=40)]

    def logits(file: Path) -> np.ndarray:
        session = ort.InferenceSession(str(file), session_options(1), providers=["CPUExecutionProvider"])
        return session.run(None, dict(zip([i.name for i in session.get_inputs()], inputs, strict=True)))[0]

    want, errors = logits(fp32), {}
    for bits in (8, 4):
        path = tmp_path / f"blocks{bits}.onnx"
        prepare(fp32, path, "int8", Recipe(block_bits=bits))
        assert "MatMulNBits" in {n.op_type for n in onnx.load(path).graph.node}
        errors[bits] = float(np.abs(logits(path) - want).max() / np.abs(want).max())
    assert 0 < errors[8] < 0.05 and errors[8] < errors[4] < 0.5, errors
