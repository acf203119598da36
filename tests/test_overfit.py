"""A tiny conformer memorises one real MAESTRO crop on CPU: the model can learn at all."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from comagen.model import ModelConfig, build_model
from comagen.music.tokenizer import PianoTokenizer

STEPS, THRESHOLD = 80, 0.5  # nats/token; an untrained model starts near ln(vocab) = 5.9


def test_tiny_conformer_overfits_one_crop(train_file: Path) -> None:
    torch.manual_seed(0)
    tokenizer = PianoTokenizer()
    ids = torch.tensor([tokenizer.bos_id, *tokenizer.encode_file(train_file)[:128]])[None]
    cfg = ModelConfig(vocab_size=tokenizer.vocab_size, dim=64, depth=2, heads=2, windows=[16, 32], conv_kernel=7,
                      ff_mult=2, dropout=0.0, max_seq_len=128)
    model = build_model(cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    composer = torch.tensor([1])
    losses = []
    with torch.set_grad_enabled(True):
        for _ in range(STEPS):
            logits = model(ids[:, :-1], composer)
            loss = F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.item())
    assert losses[0] > 5.0
    assert losses[-1] < THRESHOLD, losses[-5:]
