"""Evaluation: per-token NLL and tokenizer-independent bits per note over whole pieces.

Each piece is scored in overlapping windows (every token once, each with at least half a
window of context), conditioned on its composer. Bits per note = total NLL in bits divided by
the number of notes scored, so REMI, BPE and any other tokenization compare fairly.
"""

from __future__ import annotations

import math
from collections import defaultdict

import torch
import torch.nn.functional as F
from tqdm import tqdm

from comagen.bundle.composers import NO_COMPOSER, Composers
from comagen.music.tokenizer import PianoTokenizer
from comagen.training.data import TokenizedPiece, eval_windows

LN2 = math.log(2.0)


def token_kinds(tokenizer: PianoTokenizer) -> tuple[list[str], torch.Tensor]:
    """Kind names (Pitch, Velocity, Duration, Position, Bar, ...) and each token id's kind index
    (a BPE token mixes kinds: all are one kind there)."""
    if tokenizer.is_bpe:
        return ["BPE"], torch.zeros(tokenizer.vocab_size, dtype=torch.long)
    kinds = [tokenizer.token_text(i).split("_")[0] for i in range(tokenizer.vocab_size)]
    names = sorted(set(kinds))
    return names, torch.tensor([names.index(k) for k in kinds])


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
    pitch_ids = torch.tensor(sorted(i for t, i in tokenizer.remi.vocab.items() if t.startswith("Pitch_")))
    totals = defaultdict(lambda: {"nll": 0.0, "tokens": 0, "notes": 0.0, "files": 0})
    for piece in tqdm(pieces, desc="evaluating", unit="file", disable=not progress):
        ids = piece.ids[:max_tokens] if max_tokens else piece.ids
        composer = torch.tensor([composers.id_of(piece.piece.composer)], device=device)
        nll, count = 0.0, 0
        windows = list(eval_windows(ids, tokenizer, seq_len, stride))
        for i in range(0, len(windows), batch_size):
            group = windows[i:i + batch_size]
            length = max(len(w["input"]) for w in group)
            inputs = torch.full((len(group), length), tokenizer.pad_id, dtype=torch.long)
            targets = torch.full((len(group), length), tokenizer.pad_id, dtype=torch.long)
            mask = torch.zeros(len(group), length)
            for j, w in enumerate(group):
                n = len(w["input"])
                inputs[j, :n], targets[j, :n], mask[j, :n] = w["input"], w["target"], w["mask"]
            inputs, targets, mask = inputs.to(device), targets.to(device), mask.to(device)
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

    def summarise(t: dict) -> dict:
        per_token = t["nll"] / max(t["tokens"], 1)
        return {"nll_per_token": per_token, "bits_per_note": t["nll"] / LN2 / max(t["notes"], 1e-9),
                "perplexity": math.exp(per_token), "files": t["files"], "notes": int(round(t["notes"])),
                "tokens": t["tokens"]}

    result = summarise(totals.pop("all"))
    if not tokenizer.is_bpe:
        notes = max(result["notes"], 1e-9)
        result["bits_per_note_by_type"] = {name: float(v) / LN2 / notes for name, v in zip(kind_names, by_kind,
                                                                                            strict=True) if v > 0}
    result["per_composer"] = {name: summarise(t) for name, t in sorted(totals.items())}
    return result
