"""The sampling leans (register, dynamics, density) and per-decision temperatures: each moves its statistic toward
the prompt on the real `default` model, and switched off each is exactly the plain engine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from comagen.generation.density import DensityPrior
from comagen.generation.dynamics import DynamicsPrior
from comagen.generation.leans import Leans
from comagen.generation.prompt import Prompt
from comagen.generation.request import Request
from comagen.generation.sampling import Sampling, Uniforms, draw, sample_next
from comagen.generation.session import generate
from comagen.music.grammar import AFTER_DURATION, AFTER_PITCH, AFTER_POSITION, AFTER_VELOCITY, RemiGrammar, track
from comagen.runtime import choose_runtime

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "assets" / "checkpoints" / "default"


@pytest.fixture(scope="module")
def grammar(default_bundle) -> RemiGrammar:  # noqa: ANN001
    return RemiGrammar(default_bundle.tokenizer)


def logits_after(bundle, ids: list[int]) -> torch.Tensor:  # noqa: ANN001
    """The real model's next-token logits [1, V] after `ids`."""
    with torch.inference_mode():
        stream = choose_runtime(bundle, "torch", None).open(torch.tensor([0]))
        return torch.from_numpy(stream.prefill(np.array([[bundle.tokenizer.bos_id, *ids]])))


def probs(logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    return torch.softmax(logits.masked_fill(~allowed, -torch.inf), -1)[0]


def loud(grammar: RemiGrammar, ids: list[int]) -> list[int]:
    """The same notes with every velocity the loudest the vocabulary has: a prompt played fortissimo."""
    velocities = sorted((i for i, k in enumerate(grammar.kind) if k == "Velocity"), key=lambda i: grammar.value[i])
    return [velocities[-1] if grammar.kind[t] == "Velocity" else t for t in ids]


def test_the_dynamics_lean_moves_velocities_toward_the_prompts(default_bundle, grammar,  # noqa: ANN001
                                                               default_prompt) -> None:
    ids = loud(grammar, default_prompt.ids)
    upto = max(i for i, t in enumerate(ids) if grammar.kind[t] == "Pitch") + 1  # a velocity comes next
    state = track(grammar, ids[:upto])
    assert state.state == AFTER_PITCH
    logits, allowed = logits_after(default_bundle, ids[:upto]), state.allowed(grammar)[None]
    velocity_ids = [i for i, k in enumerate(grammar.kind) if k == "Velocity"]
    values = torch.tensor([grammar.value[i] for i in velocity_ids], dtype=torch.float)
    means = []
    for strength in (0.0, 1.0, 3.0):
        moved = logits.numpy().copy()
        if strength:
            DynamicsPrior(grammar, ids[:upto], 1, strength).apply(moved, [state])
        moved = torch.from_numpy(moved)
        p = probs(moved, allowed)
        others = [i for i in range(grammar.size) if i not in velocity_ids]
        assert torch.equal(moved[0, others], logits[0, others]), "only velocity logits may change"
        means.append(float((p[velocity_ids] * values).sum()))
    assert means[0] < means[1] < means[2] and means[2] > 110, means  # toward the prompt's 127


def test_the_register_lean_moves_pitches_toward_the_prompts_keys(default_bundle, grammar,  # noqa: ANN001
                                                                 default_prompt) -> None:
    upto = max(i for i, t in enumerate(default_prompt.ids) if grammar.kind[t] == "Position") + 1  # a pitch comes next
    state = track(grammar, default_prompt.ids[:upto])
    assert state.state == AFTER_POSITION
    logits, allowed = logits_after(default_bundle, default_prompt.ids[:upto]), state.allowed(grammar)[None]
    octave_up = [grammar.pitch_id.get(grammar.value[t] + 12, t) if grammar.kind[t] == "Pitch" else t
                 for t in default_prompt.ids[:upto]]  # the prior hears the prompt an octave higher than the model did
    pitch_ids = sorted(grammar.pitch_id.values())
    keys = torch.tensor([grammar.value[i] for i in pitch_ids], dtype=torch.float)
    heard = float(np.mean([grammar.value[t] for t in octave_up if grammar.kind[t] == "Pitch"]))
    gaps = []
    for strength in (0.0, 1.0, 3.0):
        leans = Leans.maybe(grammar, octave_up, 1, Sampling(register_strength=strength))
        moved = leans.apply(logits, allowed, [state]) if leans else logits
        p = probs(moved, allowed)
        assert float(p[pitch_ids].sum()) == pytest.approx(float(probs(logits, allowed)[pitch_ids].sum()), abs=1e-5)
        gaps.append(abs(float((p[pitch_ids] * keys).sum() / p[pitch_ids].sum()) - heard))
    assert gaps[0] > gaps[1] > gaps[2] and gaps[0] - gaps[2] > 4, gaps


def leaned(prior: DensityPrior, logits: torch.Tensor, allowed: torch.Tensor, state) -> torch.Tensor:  # noqa: ANN001
    """The density lean applied to a copy of the logits."""
    out = logits.numpy().copy()
    prior.apply(out, allowed.numpy(), [state])
    return torch.from_numpy(out)


def class_mass(prior: DensityPrior, p: torch.Tensor, grammar: RemiGrammar, since_onset: int) -> np.ndarray:
    """The probability of each gap class (bins, then 'past this bar') a timing distribution gives."""
    mass = np.zeros(prior.tail_class + 1)
    mass[0] += float(p[list(grammar.pitch_id.values())].sum())
    for position, token in zip(prior.positions.tolist(), prior.position_ids.tolist(), strict=True):
        mass[prior._bin(since_onset + position)] += float(p[token])
    mass[prior.tail_class] += float(p[grammar.bar_id])
    return mass


def test_the_density_lean_moves_the_gap_to_the_next_note_toward_the_prompts(default_bundle, grammar,  # noqa: ANN001
                                                                            default_prompt) -> None:
    state = track(grammar, default_prompt.ids)
    assert state.state == AFTER_DURATION
    logits, allowed = logits_after(default_bundle, default_prompt.ids), state.allowed(grammar)[None]
    full = DensityPrior(grammar, default_prompt.ids, 1, 1.0)
    since = (state.bars - 1) * full.per_bar - full.last[0]
    target = class_mass(full, probs(leaned(full, logits, allowed, state), allowed), grammar, since)
    gaps = []
    for strength in (0.0, 0.5, 1.0):
        moved = leaned(DensityPrior(grammar, default_prompt.ids, 1, strength), logits, allowed, state)
        p = probs(moved, allowed)
        assert float(p[grammar.eos_id]) == pytest.approx(float(probs(logits, allowed)[grammar.eos_id]), abs=1e-6)
        gaps.append(np.abs(class_mass(full, p, grammar, since) - target).sum())
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 1e-5, gaps
    # the target is the prompt's own gap histogram over the classes this decision can reach
    per_gap, tail = (a[0] for a in full.class_p())
    reach = [float(per_gap[0])] + [0.0] * full.tail_class
    for position in full.positions.tolist():
        if allowed[0, grammar.position_id[position]]:
            reach[full._bin(since + position)] += float(per_gap[since + position])
    reach[full.tail_class] = float(tail[min(since + full.per_bar, full.longest)])
    assert np.allclose(target, np.array(reach) / sum(reach), atol=1e-5)


def test_each_decision_gets_its_own_temperature(grammar) -> None:  # noqa: ANN001
    sampling = Sampling(pitch_temperature=0.5, velocity_temperature=2.0, duration_temperature=0.25,
                        timing_temperature=1.5)
    leans = Leans.maybe(grammar, [], 5, sampling)
    states = [track(grammar, [])]
    for kind in ("Bar", "Position", "Pitch", "Velocity", "Duration"):
        token = next(i for i, k in enumerate(grammar.kind) if k == kind)
        states.append(states[-1].advance(grammar, token))
    assert [s.state for s in states[2:]] == [AFTER_POSITION, AFTER_PITCH, AFTER_VELOCITY, AFTER_DURATION]
    assert leans.temperature_factors(states[1:]).tolist() == [1.5, 0.5, 2.0, 0.25, 1.5]


def test_equal_factors_sample_exactly_as_one_temperature() -> None:
    logits = torch.randn(3, 50, generator=torch.Generator().manual_seed(0))
    allowed = torch.ones(3, 50, dtype=torch.bool)
    sampling = Sampling(temperature=0.8, top_p=0.9)
    one = sample_next(logits, allowed, sampling, torch.Generator().manual_seed(1))
    each = sample_next(logits, allowed, sampling, torch.Generator().manual_seed(1), torch.ones(3))
    assert torch.equal(one, each)


def velocities_of(grammar: RemiGrammar, ids: list[int]) -> np.ndarray:
    return np.array([grammar.value[t] for t in ids if grammar.kind[t] == "Velocity"], dtype=float)


def test_block_drawn_uniforms_are_the_one_at_a_time_draws() -> None:
    """The engine draws its uniforms a block at a time; the music must be what one draw per token made."""
    one = torch.Generator().manual_seed(7)
    singles = [torch.rand(n, generator=one, dtype=torch.float64).numpy() for n in [1, 2] * 700 + [1500]]
    blocks = Uniforms(torch.Generator().manual_seed(7))
    assert all(np.array_equal(blocks.take(len(a)), a) for a in singles)  # crosses the block edge, and a take > BLOCK


def test_a_one_row_draw_is_the_batch_draw_of_that_row() -> None:
    """A batch-1 draw is a binary search: it must pick what the batched count picks, at every uniform,
    including the edges (0, just below 1) and rows with zero weights between their tokens."""
    rng = np.random.default_rng(0)
    weights = rng.random((400, 40)) * (rng.random((400, 40)) > 0.6)
    weights[:, 7] += 1e-3  # every row has some weight
    uniform = np.concatenate([[0.0, 1 - 1e-16], rng.random(398)])
    batched = draw(weights, uniform)
    assert all(draw(weights[i:i + 1], uniform[i:i + 1])[0] == batched[i] for i in range(len(weights)))
    assert (weights[np.arange(len(weights)), batched] > 0).all()


def test_off_is_exactly_the_plain_engine_and_on_moves_the_music(default_bundle, grammar,  # noqa: ANN001
                                                                default_prompt) -> None:
    ids = loud(grammar, default_prompt.ids)
    loud_prompt = Prompt(ids, default_prompt.seconds)
    base = dict(max_tokens=300, seed=2, variations=2)
    plain = generate(default_bundle, loud_prompt, Request(**base, sampling=Sampling()))
    off = generate(default_bundle, loud_prompt, Request(**base, sampling=Sampling(
        dynamics_strength=0.0, density_strength=0.0, pitch_temperature=1.0, velocity_temperature=1.0)))
    assert off.leans is None and all(plain.generated(r) == off.generated(r) for r in range(2))
    leaned = generate(default_bundle, loud_prompt, Request(**base, sampling=Sampling(dynamics_strength=3.0)))
    for r in range(2):
        assert leaned.score(r).note_num() > 0
        gap = [abs(velocities_of(grammar, s.generated(r)).mean() - 127) for s in (plain, leaned)]
        assert gap[1] < gap[0] - 10, gap  # a fortissimo prompt is answered louder
    calm = generate(default_bundle, loud_prompt, Request(**base, sampling=Sampling(velocity_temperature=0.1)))
    spread = [np.std(velocities_of(grammar, s.generated(r))) for s in (plain, calm) for r in range(2)]
    assert max(spread[2:]) < min(spread[:2]), spread  # a cold velocity decision varies less
