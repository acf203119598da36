"""Classifier-free guidance over a batch: which composer each row reads, and how the rows' logits mix.

With guidance, every row has an unconditional twin later in the same batch (composer 0); the
logits sampled from are the twin's plus `guidance` times the difference. Guidance 1 is the plain
conditional model and 0 the unconditional one, so neither needs twins.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

from comagen.generation.request import Request

Logits = TypeVar("Logits", np.ndarray, torch.Tensor)  # the engine's numpy rows, or infill's tensors


def guided(request: Request) -> bool:
    """Whether the request needs unconditional twins (a composer, and guidance other than 0 or 1)."""
    return request.composer > 0 and request.guidance not in (0.0, 1.0)


def row_composers(request: Request, rows: int) -> list[int]:
    """The composer id of each batch row: `rows` conditioned rows, then their twins when guided."""
    cond = request.composer if request.guidance > 0 else 0
    return [cond] * rows + ([0] * rows if guided(request) else [])


def mix(logits: Logits, rows: int, guidance: float) -> Logits:
    """The guided logits [rows, V] of a batch [2 * rows, V] laid out as `row_composers` makes it."""
    return logits[rows:] + guidance * (logits[:rows] - logits[rows:])
