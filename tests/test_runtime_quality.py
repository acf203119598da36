"""Teacher-forcing through a runtime's step scores what the model's own forward scores."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from conftest import small_conformer_bundle

from comagen.runtime import TorchRuntime
from comagen.training.runtime_quality import teacher_forced


def test_teacher_forced_torch_steps_match_the_forward_and_skip_padding() -> None:
    bundle = small_conformer_bundle(["Bach", "Chopin"], widen=True)
    gen = torch.Generator().manual_seed(0)
    rows = [torch.randint(4, bundle.tokenizer.vocab_size, (n,), generator=gen).tolist() for n in (70, 45)]
    composers = torch.tensor([1, 2])
    runtimes = {"torch": TorchRuntime(bundle.model), "again": TorchRuntime(bundle.model)}
    scores = teacher_forced(runtimes, rows, composers, bundle.tokenizer.pad_id)
    assert scores.targets.tolist() == [69, 44]
    with torch.inference_mode():
        for i, row in enumerate(rows):
            ids = torch.tensor([row])
            logits = bundle.model(ids[:, :-1], composers[i:i + 1])
            nll = F.cross_entropy(logits[0].float(), ids[0, 1:], reduction="sum")
            assert abs(float(scores.nll["torch"][i]) - float(nll)) < 1e-3 * len(row)
    assert scores.kl["again"] < 1e-9 and scores.top1["again"] == 1.0 and scores.max_logit_diff["again"] == 0.0
