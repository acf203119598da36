"""What a decode runtime costs in quality: real pieces teacher-forced through each runtime's one-token step.

Speed is measured on generated music; quality has to be measured on known music. Every runtime
(torch, ONNX fp32, ONNX int8) is fed the same tokens one at a time, taking turns token by token so
load from other processes hits all alike; the log-probability each gives the true next token
yields bits per note, and its distributions are compared with the reference runtime's (KL, top-1
agreement, largest logit difference) at the same positions.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from comagen.runtime.stream import Runtime

if TYPE_CHECKING:
    from comagen.bundle.checkpoint import Bundle
    from comagen.music.tokenizer import PianoTokenizer
    from comagen.training.data import TokenizedPiece

LN2 = math.log(2.0)


@dataclass
class ForcedScores:
    """Per runtime: summed NLL (nats) of each row's targets, mean KL(reference || runtime) per target,
    top-1 agreement with the reference, largest |logit - reference logit|, and step seconds."""

    targets: Tensor  # [B] targets scored per row
    nll: dict[str, Tensor] = field(default_factory=dict)
    kl: dict[str, float] = field(default_factory=dict)
    top1: dict[str, float] = field(default_factory=dict)
    max_logit_diff: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def padded(rows: list[list[int]], pad: int) -> tuple[Tensor, Tensor]:
    """Rows of unequal length as one [B, T] tensor (padded with `pad`) and their lengths [B]."""
    lengths = torch.tensor([len(r) for r in rows])
    ids = torch.full((len(rows), int(lengths.max())), pad, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = torch.tensor(row, dtype=torch.long)
    return ids, lengths


@torch.inference_mode()
def teacher_forced(runtimes: dict[str, Runtime], rows: list[list[int]], composers: Tensor, pad: int,
                   reference: str = "torch") -> ForcedScores:
    """Score every row (its first token a BOS, prefilled) through each runtime's step; rows past
    their end keep stepping on `pad`, unscored, so the batch stays whole."""
    ids, lengths = padded(rows, pad)
    scores = ForcedScores(targets=lengths - 1)
    streams = {name: runtime.open(composers) for name, runtime in runtimes.items()}
    logits = {name: torch.from_numpy(stream.prefill(ids[:, :1].numpy())) for name, stream in streams.items()}
    totals = {name: {"nll": torch.zeros(len(rows), dtype=torch.float64), "kl": 0.0, "top1": 0, "diff": 0.0,
                     "s": 0.0} for name in runtimes}
    for t in range(1, ids.shape[1]):
        live, target = t < lengths, ids[:, t]
        ref = logits[reference].float()
        ref_logp = ref.log_softmax(-1)
        ref_p, ref_top = ref_logp.exp(), ref.argmax(-1)
        for name, out in logits.items():
            logp = out.float().log_softmax(-1)
            total = totals[name]
            total["nll"] -= torch.where(live, logp.gather(1, target[:, None])[:, 0], 0.0).double()
            total["kl"] += float(((ref_p * (ref_logp - logp)).sum(-1) * live).sum())
            total["top1"] += int(((ref_top == out.argmax(-1)) & live).sum())
            total["diff"] = max(total["diff"], float((out.float() - ref)[live].abs().max()) if live.any() else 0.0)
        if t == ids.shape[1] - 1:
            break
        for name, stream in streams.items():
            start = time.perf_counter()
            logits[name] = torch.from_numpy(stream.step(target.numpy()))
            totals[name]["s"] += time.perf_counter() - start
    count = max(int(scores.targets.sum()), 1)
    for name, total in totals.items():
        scores.nll[name] = total["nll"]
        scores.kl[name] = max(total["kl"], 0.0) / count  # rounding can leave a hair below 0 for identical logits
        scores.top1[name] = total["top1"] / count
        scores.max_logit_diff[name], scores.seconds[name] = total["diff"], total["s"]
    return scores


def notes_in(tokenizer: PianoTokenizer, piece: TokenizedPiece, targets: list[int]) -> float:
    """Notes among a piece's scored targets, counted as `evaluate` counts them: Pitch tokens (plain
    REMI), or the piece's notes in proportion to the tokens scored (BPE)."""
    if tokenizer.is_bpe:
        return piece.notes * len(targets) / max(len(piece.ids), 1)
    return float(tokenizer.vocab.notes(targets))


def runtime_bits(bundle: Bundle, runtimes: dict[str, Runtime], pieces: list[TokenizedPiece], tokens: int) -> dict:
    """Bits per note of each runtime on the first `tokens` tokens of each piece (conditioned on its
    composer), teacher-forced as one batch; per piece too, with the distances from torch."""
    tok = bundle.tokenizer
    rows = [[tok.bos_id, *p.ids[:tokens].tolist()] for p in pieces]
    composers = torch.tensor([bundle.composers.id_of(p.piece.composer) for p in pieces])
    s = teacher_forced(runtimes, rows, composers, tok.pad_id)
    notes = [notes_in(tok, p, r[1:]) for p, r in zip(pieces, rows, strict=True)]
    bits = {name: float(nll.sum()) / LN2 / max(sum(notes), 1e-9) for name, nll in s.nll.items()}
    steps = max(len(r) for r in rows) - 2
    return {"files": [p.piece.path.name for p in pieces], "tokens_per_file": tokens,
            "targets": int(s.targets.sum()), "notes": int(sum(notes)),
            "bits_per_note": {k: round(v, 4) for k, v in bits.items()},
            "kl_vs_torch": {k: round(v, 6) for k, v in s.kl.items()},
            "top1_vs_torch": {k: round(v, 4) for k, v in s.top1.items()},
            "max_logit_diff_vs_torch": {k: float(f"{v:.3g}") for k, v in s.max_logit_diff.items()},
            "batch_step_ms": {k: round(1000 * v / max(steps, 1), 2) for k, v in s.seconds.items()},
            "per_file_bits": [{"file": p.piece.path.name, "notes": int(n),
                               **{k: round(float(nll[i]) / LN2 / max(n, 1e-9), 3) for k, nll in s.nll.items()}}
                              for i, (p, n) in enumerate(zip(pieces, notes, strict=True))]}
