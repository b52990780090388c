"""How the note LSTM's weights are stepped: AdamW's parameter groups and the learning-rate
schedule (linear warm-up, then cosine decay, fitted to a time budget while training runs)."""

from __future__ import annotations

import math
from typing import Any

from torch import nn


class WarmupCosine:
    """LR factor: linear warmup, then cosine decay to zero at ``total`` steps.

    An object (not a lambda) so ``LambdaLR.state_dict`` saves ``total`` (which a wall-clock
    budget may shorten during the run) and ``planned`` (the length ``--epochs`` asks for; 0
    until the first epoch's size is known).
    """

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.total = 1
        self.planned = 0

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        span = max(1, self.total - self.warmup)
        progress = min(1.0, (step - self.warmup) / span)
        return 0.5 * (1.0 + math.cos(math.pi * progress))


def decay_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW parameter groups: weight decay on matrices only (not biases, not the embedding
    table)."""
    decay: list[nn.Parameter] = []
    plain: list[nn.Parameter] = []
    for name, p in model.named_parameters():
        (decay if p.dim() >= 2 and not name.startswith("embed") else plain).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}]
