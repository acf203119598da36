"""Model contracts: causality, streaming == full forward, constant state, windows, capture, config."""

from __future__ import annotations

import json

import pytest
import torch

from comagen.errors import ConfigError
from comagen.model import AttentionCapture, ModelConfig, build_model
from comagen.model.attention import MultiScaleLocalAttention, window_contexts
from comagen.model.hyper import HyperConnection
from comagen.model.positional import DynamicPositionBias

ARCHS = ["conformer", "gpt2", "music_transformer", "llama"]
TINY = dict(vocab_size=40, n_composers=4, dim=32, depth=2, heads=4, dropout=0.0, max_seq_len=64, windows=[4, 8],
            window_cap=16, conv_kernel=5, ff_mult=2, kv_heads=2, max_relative=16)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models gain nothing from threads, and on a busy 2-core box OpenMP spinning costs 5-10x."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny(arch: str = "conformer", **overrides: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig.from_dict({**TINY, "arch": arch, **overrides})).eval()


def tokens(batch: int = 2, length: int = 48, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, TINY["vocab_size"], (batch, length), generator=g), torch.tensor([0, 3][:batch])


def stream(model: torch.nn.Module, x: torch.Tensor, c: torch.Tensor, prompt: int, **state_kw: object) -> torch.Tensor:
    """Logits for positions prompt-1 .. L-1 from prefill(prompt) then one step per token."""
    state = model.new_state(x.shape[0], **state_kw)
    last, state = model.prefill(x[:, :prompt], c, state)
    out = [last]
    for t in range(prompt, x.shape[1]):
        last, state = model.step(x[:, t], c, state)
        out.append(last)
    return torch.stack(out, dim=1)


CASES = [("conformer", {}), ("conformer", {"position": "dpb"}),
         ("conformer", {"hyper_streams": 3, "global_layers": [1]}), ("gpt2", {}), ("music_transformer", {}),
         ("llama", {})]


@pytest.mark.parametrize(("arch", "extra"), CASES)
def test_causal(arch: str, extra: dict) -> None:
    model = tiny(arch, **extra)
    x, c = tokens()
    y = x.clone()
    y[:, 30:] = (y[:, 30:] + 1) % TINY["vocab_size"]
    assert torch.allclose(model(x, c)[:, :30], model(y, c)[:, :30], atol=1e-5)
    assert not torch.allclose(model(x, c)[:, 30:], model(y, c)[:, 30:], atol=1e-5)


@pytest.mark.parametrize(("arch", "extra"), CASES)
def test_streaming_matches_full_forward(arch: str, extra: dict) -> None:
    model = tiny(arch, **extra)
    x, c = tokens(length=48)  # longer than every window (8) and kernel (5); prompt too
    full = model(x, c)
    assert torch.allclose(stream(model, x, c, prompt=13), full[:, 12:], atol=1e-4)
    assert torch.allclose(stream(model, x, c, prompt=1), full, atol=1e-4)


def test_streaming_exact_far_past_training_length() -> None:
    """Positions are relative, so a stream 2000 tokens in (far past max_seq_len=64) still matches the full forward."""
    model = tiny(windows=[4, 8], depth=1)
    x, c = tokens(batch=1, length=2000)
    full = model(x, c)
    got = stream(model, x, c, prompt=1500)
    assert torch.allclose(got, full[:, 1499:], atol=1e-4)


def test_chunked_prefill_matches() -> None:
    model = tiny()
    x, c = tokens()
    state = model.new_state(2)
    for a, b in [(0, 3), (3, 20), (20, 21), (21, 48)]:
        last, state = model.prefill(x[:, a:b], c, state)
    assert torch.allclose(last, model(x, c)[:, -1], atol=1e-4)


def test_gpt2_slides_past_its_table() -> None:
    model = tiny("gpt2", max_seq_len=16)
    x, c = tokens(length=40)
    state = model.new_state(2)
    _, state = model.prefill(x[:, :10], c, state)
    for t in range(10, 40):
        last, state = model.step(x[:, t], c, state)
    # a slide happens when token 16, 25, 34 arrives (table full); the last one keeps tokens 27..34 at positions 0..7
    assert torch.allclose(last, model(x[:, 27:], c)[:, -1], atol=1e-4)
    assert state.pos <= 16


def test_conformer_state_is_constant() -> None:
    model = tiny()
    x, c = tokens(batch=1, length=1)
    state = model.new_state(1)
    _, state = model.prefill(x, c, state)
    sizes = set()
    for _ in range(100):  # > every window and kernel, so all buffers have wrapped
        _, state = model.step(x[:, 0], c, state)
        sizes.add(state.nbytes())
    assert len(sizes) == 1


def test_state_clone_and_select() -> None:
    model = tiny()
    x, c = tokens()
    state = model.new_state(2)
    _, state = model.prefill(x[:, :20], c, state)
    fork = state.clone()
    a, _ = model.step(x[:, 20], c, state)
    b, _ = model.step(x[:, 20], c, fork)
    assert torch.equal(a, b)
    swapped = state.select(torch.tensor([1, 1]))
    d, _ = model.step(x[:, 21], c, state)
    e, _ = model.step(x[[1, 1], 21], c[[1, 1]], swapped)
    assert torch.allclose(e[0], d[1], atol=1e-5) and torch.allclose(e[1], d[1], atol=1e-5)


def test_single_stream_hyper_connection_is_plain_residual() -> None:
    branch = torch.nn.Sequential(torch.nn.LayerNorm(8), torch.nn.Linear(8, 8))
    hc = HyperConnection(8, 1, 0, branch)
    x = torch.randn(2, 5, 8)
    out, _ = hc(x)
    assert torch.equal(out, x + branch(x))
    assert sum(p.numel() for p in hc.parameters()) == sum(p.numel() for p in branch.parameters())


@pytest.mark.parametrize("position", ["xpos", "dpb"])
def test_window_override_narrows_what_a_query_sees(position: str) -> None:
    model = tiny(position=position, depth=1, conv_kernel=1)  # one layer, no conv reach: receptive field = window
    x, c = tokens(length=40)
    far, near = x.clone(), x.clone()
    far[:, 39 - 6] = (far[:, 39 - 6] + 1) % 40  # 6 back: inside window 8, outside narrowed window 4
    near[:, 39 - 2] = (near[:, 39 - 2] + 1) % 40  # 2 back: inside both
    narrow = [2, 4]
    assert torch.allclose(model(x, c, windows=narrow)[:, -1], model(far, c, windows=narrow)[:, -1], atol=1e-6)
    assert not torch.allclose(model(x, c)[:, -1], model(far, c)[:, -1], atol=1e-6)
    assert not torch.allclose(model(x, c, windows=narrow)[:, -1], model(near, c, windows=narrow)[:, -1], atol=1e-6)
    wide = [8, 16]  # wider than trained, up to window_cap; streaming still exact
    assert torch.allclose(stream(model, x, c, prompt=5, windows=wide), model(x, c, windows=wide)[:, 4:], atol=1e-4)
    with pytest.raises(ConfigError):
        model(x, c, windows=[4, 17])
    with pytest.raises(ConfigError):
        model(x, c, windows=[4])


def test_capture_shapes_and_normalisation() -> None:
    model = tiny(depth=2)
    x, c = tokens(length=30)
    logits, cap = model(x, c, capture_last=5)
    assert isinstance(cap, AttentionCapture) and logits.shape == (2, 30, 40)
    assert cap.windows == [4, 8] and cap.global_layers == []
    assert len(cap.probs) == 2 and all(len(layer) == 2 for layer in cap.probs)
    for layer in cap.probs:
        for w, p in zip(cap.windows, layer, strict=True):
            assert p.shape == (4, 5, w)
            assert torch.allclose(p.sum(-1), torch.ones(4, 5), atol=1e-5)
    assert cap.scale_weights.shape == (2, 2) and torch.allclose(cap.scale_weights.sum(-1), torch.ones(2))
    _, early = model(x[:, :3], c, capture_last=3)  # windows reach before the start: zeros there
    first = early.probs[0][1]  # scale with window 8, query 0 sees only itself
    assert torch.allclose(first[:, 0, -1], torch.ones(4)) and first[:, 0, :-1].abs().max() == 0

    state = model.new_state(2)
    _, state = model.prefill(x[:, :29], c, state)
    _, _, step_cap = model.step(x[:, 29], c, state, capture=True)
    for a, b in zip(step_cap.probs, cap.probs, strict=True):
        for pa, pb in zip(a, b, strict=True):
            assert torch.allclose(pa[:, 0], pb[:, -1], atol=1e-5)


def test_config_round_trip_and_unknown_key() -> None:
    cfg = ModelConfig.from_dict({**TINY, "arch": "llama"})
    assert ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ConfigError, match="wndows.*windows"):
        ModelConfig.from_dict({"wndows": [4]})
    with pytest.raises(ConfigError, match="arch"):
        ModelConfig.from_dict({"arch": "rnn"})


@pytest.mark.parametrize("name", ["default", "flagship", "gpt2", "music_transformer", "llama"])
def test_shipped_configs_build(name: str) -> None:
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "training" / "configs" / f"{name}.json"
    data = json.loads(path.read_text())
    cfg = ModelConfig.from_dict(data["model"])
    params = build_model(cfg).num_parameters()
    assert params < 12_500_000


def _one_scale(attn: MultiScaleLocalAttention, s: int) -> MultiScaleLocalAttention:
    """Scale `s` of a multi-scale attention as a module of its own (its rows of every weight)."""
    dim, h, scales = attn.to_out.in_features, attn.heads, attn.scales
    single = MultiScaleLocalAttention(dim, h, 1, 0.0).eval()
    rows = torch.cat([attn.to_qkv.weight[(t * scales + s) * dim:(t * scales + s + 1) * dim] for t in range(3)])
    single.load_state_dict({"norm.weight": attn.norm.weight, "norm.bias": attn.norm.bias, "to_qkv.weight": rows,
                            "q_scale": attn.q_scale[s * h:(s + 1) * h], "k_scale": attn.k_scale[s * h:(s + 1) * h],
                            "scale_logits": torch.zeros(1), "to_out.weight": attn.to_out.weight})
    return single


@pytest.mark.parametrize("windows", [[4, 8, 16], [4, 8, 64]])  # one fused call; [4, 8] fused and 64 alone
@pytest.mark.parametrize("position", ["xpos", "dpb"])
@pytest.mark.parametrize("start", [0, 40])
def test_fused_scales_equal_one_call_per_scale(windows: list[int], position: str, start: int) -> None:
    """All scales in one pass == each scale alone in its own pass, mixed by the learned weights."""
    assert len(window_contexts(windows, 8, 0, 16, None, torch.device("cpu"))) == (1 if max(windows) < 64 else 2)
    torch.manual_seed(0)
    dim, heads, length = 32, 2, 37
    attn = MultiScaleLocalAttention(dim, heads, len(windows), 0.0).eval()
    attn.scale_logits.data = torch.tensor([0.3, -0.2, 0.5])
    dpb = torch.nn.ModuleList(DynamicPositionBias(heads) for _ in windows) if position == "dpb" else None
    x, past = torch.randn(2, length, dim), torch.randn(2, start, dim)

    def run(module: MultiScaleLocalAttention, ws: list[int], tables: torch.nn.ModuleList | None):
        cache = module.new_cache(2, ws, torch.device("cpu"), torch.float32) if start else None
        if cache is not None:  # fill the window with real past tokens first (the prefill path)
            module(past, window_contexts(ws, start, 0, dim // heads, tables, past.device), cache)
        return module(x, window_contexts(ws, length, start, dim // heads, tables, x.device), cache, need_probs=True)

    with torch.no_grad():
        fused, probs = run(attn, windows, dpb)
        weights = attn.scale_weights()
        parts = [run(_one_scale(attn, s), [w], None if dpb is None else torch.nn.ModuleList([dpb[s]]))
                 for s, w in enumerate(windows)]
    reference = sum(weights[s] * out for s, (out, _) in enumerate(parts))
    assert torch.allclose(fused, reference, atol=1e-5)
    for s, (_, single_probs) in enumerate(parts):
        assert probs[s].shape == (2, heads, length, windows[s])
        assert torch.allclose(probs[s], single_probs[0], atol=1e-5)


@pytest.mark.parametrize("position", ["xpos", "dpb"])
@pytest.mark.parametrize(("batch", "length", "start"), [(2, 37, 0), (1, 150, 0), (2, 150, 0), (2, 60, 100)])
def test_fused_kernel_equals_the_written_out_scores(position: str, batch: int, length: int, start: int) -> None:
    """The blockwise path's fused kernel (scaled_dot_product_attention) gives the written-out softmax's
    output: one block after an empty past, many blocks whose first ones see padding (a per-block
    mask), and blocks after a cached past; every scale group; per-head dpb biases too."""
    torch.manual_seed(0)
    windows, dim, heads = [4, 8, 64], 32, 2
    attn = MultiScaleLocalAttention(dim, heads, len(windows), 0.0).eval()
    dpb = torch.nn.ModuleList(DynamicPositionBias(heads) for _ in windows) if position == "dpb" else None
    x, past = torch.randn(batch, length, dim), torch.randn(batch, start, dim)
    cache = attn.new_cache(batch, windows, torch.device("cpu"), torch.float32) if start else None
    with torch.no_grad():
        if cache is not None:
            attn(past, window_contexts(windows, start, 0, dim // heads, dpb, past.device), cache)
        ctxs = window_contexts(windows, length, start, dim // heads, dpb, x.device)
        assert (ctxs[-1].nblocks > 1) == (length > 64)  # the 64 scale: one block, or several
        snapshot = [c.clone() for c in cache] if cache is not None else None
        fused, _ = attn(x, ctxs, cache)
        written, _ = attn(x, ctxs, snapshot, need_probs=True)
    assert torch.allclose(fused, written, atol=1e-5)


def test_flex_path_equals_blockwise_on_cpu() -> None:
    """The GPU training path (one flex_attention call for all scales), compiled for the CPU at tiny size.

    The length is a multiple of flex's 128-token block, as training crops are (CPU inductor gives NaN
    rows for a ragged last block)."""
    x, c = tokens(length=128)
    blockwise = tiny(position="dpb", windows=[4, 8, 16], heads=2, max_seq_len=128)  # per-head mask and bias
    flex = tiny(position="dpb", windows=[4, 8, 16], heads=2, max_seq_len=128, attention_backend="flex")
    with torch.no_grad():
        assert torch.allclose(flex(x, c), blockwise(x, c), atol=1e-5)


def test_xtransformers_peer_is_causal_and_refuses_streaming_clearly() -> None:
    model = tiny("xtransformers")
    x, c = tokens()
    with torch.no_grad():
        changed = x.clone()
        changed[:, 30] = (changed[:, 30] + 1) % TINY["vocab_size"]
        assert torch.equal(model(x, c)[:, :30], model(changed, c)[:, :30])
    with pytest.raises(ConfigError, match="no streaming"):
        model.new_state(2)
