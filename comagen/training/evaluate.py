"""Evaluation: per-token NLL and tokenizer-independent bits per note over whole pieces.

Each piece is scored in overlapping windows (every token once, each with at least half a
window of context), conditioned on its composer. Bits per note = total NLL in bits divided by
the number of notes scored, so REMI, BPE and any other tokenization compare fairly.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from comagen.bundle.composers import NO_COMPOSER, Composers
from comagen.music.tokenizer import PianoTokenizer
from comagen.training.data import TokenizedPiece

LN2 = math.log(2.0)


def token_kinds(tokenizer: PianoTokenizer) -> tuple[list[str], torch.Tensor]:
    """Kind names (Pitch, Velocity, Duration, Position, Bar, ...) and each token id's kind index
    (a BPE token mixes kinds: all are one kind there)."""
    kinds = tokenizer.vocab.kind
    names = sorted(set(kinds))
    return names, torch.tensor([names.index(k) for k in kinds])


def eval_windows(ids: np.ndarray, tokenizer: PianoTokenizer, seq_len: int, stride: int) -> Iterator[dict]:
    """Overlapping windows over [BOS] + piece + [EOS] so every target is scored exactly once,
    each with at least `seq_len - stride` tokens of context (except at the start)."""
    full = np.concatenate([[tokenizer.bos_id], ids.astype(np.int64), [tokenizer.eos_id]])
    n_targets = len(full) - 1
    scored = 0
    start = 0
    while scored < n_targets:
        end = min(start + seq_len, n_targets)
        window = full[start : end + 1]
        mask = np.zeros(len(window) - 1, dtype=np.float32)
        mask[scored - start :] = 1.0
        yield {"input": torch.from_numpy(window[:-1].copy()), "target": torch.from_numpy(window[1:].copy()),
               "mask": torch.from_numpy(mask)}
        scored = end
        start = max(0, end - (seq_len - stride))
        if end == n_targets:
            break


@torch.no_grad()
def evaluate_pieces(
    model: torch.nn.Module,
    pieces: list[TokenizedPiece],
    tokenizer: PianoTokenizer,
    composers: Composers,
    *,
    seq_len: int,
    stride: int | None = None,
    max_tokens: int | None = None,
    batch_size: int = 8,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> dict:
    """NLL per token, bits per note, perplexity, counts, a per-composer breakdown and (plain REMI)
    bits per note by token type, so a change can be traced to what it taught the model."""
    stride = stride or seq_len // 2
    kind_names, kind_of = token_kinds(tokenizer)
    by_kind = torch.zeros(len(kind_names), dtype=torch.float64)
    pitch_ids = torch.tensor(tokenizer.vocab.pitch_ids)
    totals = defaultdict(lambda: {"nll": 0.0, "tokens": 0, "notes": 0.0, "files": 0})
    for piece in tqdm(pieces, desc="evaluating", unit="file", disable=not progress):
        ids = piece.ids[:max_tokens] if max_tokens else piece.ids
        composer = torch.tensor([composers.id_of(piece.piece.composer)], device=device)
        nll, count = 0.0, 0
        windows = list(eval_windows(ids, tokenizer, seq_len, stride))
        for i in range(0, len(windows), batch_size):
            group = windows[i:i + batch_size]
            inputs, targets, mask = (t.to(device) for t in _padded(group, tokenizer.pad_id))
            logits = model(inputs, composer.expand(len(group)))
            loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="none")
            nll += float((loss * mask.flatten()).sum())
            by_kind += torch.bincount(kind_of[targets.flatten().cpu()], (loss * mask.flatten()).double().cpu(),
                                      minlength=len(kind_names))
            count += int(mask.sum())
        if tokenizer.is_bpe or max_tokens is None or len(ids) == len(piece.ids):
            notes = piece.notes * len(ids) / max(len(piece.ids), 1)
        else:
            notes = float(torch.isin(torch.from_numpy(ids.astype("int64")), pitch_ids).sum())
        for key in ("all", piece.piece.composer or NO_COMPOSER):
            t = totals[key]
            t["nll"] += nll
            t["tokens"] += count
            t["notes"] += notes
            t["files"] += 1

    result = _summary(totals.pop("all"))
    if not tokenizer.is_bpe:
        notes = max(result["notes"], 1e-9)
        result["bits_per_note_by_type"] = {name: float(v) / LN2 / notes for name, v in zip(kind_names, by_kind,
                                                                                            strict=True) if v > 0}
    result["per_composer"] = {name: _summary(t) for name, t in sorted(totals.items())}
    return result


def _padded(group: list[dict], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Windows of different lengths as one batch: inputs and targets padded with `pad_id`, mask with 0."""
    length = max(len(w["input"]) for w in group)
    inputs = torch.full((len(group), length), pad_id, dtype=torch.long)
    targets = torch.full((len(group), length), pad_id, dtype=torch.long)
    mask = torch.zeros(len(group), length)
    for j, w in enumerate(group):
        n = len(w["input"])
        inputs[j, :n], targets[j, :n], mask[j, :n] = w["input"], w["target"], w["mask"]
    return inputs, targets, mask


def _summary(t: dict) -> dict:
    """The reported figures of one group of pieces (all, or one composer's)."""
    per_token = t["nll"] / max(t["tokens"], 1)
    return {"nll_per_token": per_token, "bits_per_note": t["nll"] / LN2 / max(t["notes"], 1e-9),
            "perplexity": math.exp(per_token), "files": t["files"], "notes": int(round(t["notes"])),
            "tokens": t["tokens"]}
