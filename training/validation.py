"""Scoring the model in training: bits per token over whole performances, the recurrent state
carried from each one's first token to its last, as the daemon carries it."""

from __future__ import annotations

import math

import numpy as np
import torch
from antiphon.training.batches import IGNORE, StreamBatches
from antiphon.training.model import NoteLSTM, State
from antiphon.training.ranks import Ranks, all_max, all_sum
from torch import nn

LN2 = math.log(2.0)


def reset_rows(state: State, reset: torch.Tensor) -> State:
    """``state`` cut from the graph, with the rows that start a new stream set to zero."""
    keep = (~reset).to(state[0].dtype)[None, :, None]
    return state[0].detach() * keep, state[1].detach() * keep


@torch.no_grad()
def evaluate_bits(
    model: NoteLSTM,
    streams: list[np.ndarray],
    rows: int,
    window: int,
    device: torch.device,
    ranks: Ranks | None = None,
) -> tuple[float, int]:
    """Bits per token over whole performances, state carried from the first token to the last.

    Returns (bits per token, tokens scored), summed over every rank's share of ``streams``.
    """
    ranks = ranks or Ranks()
    mine = streams[ranks.rank :: ranks.world]
    batches = StreamBatches(mine, max(1, min(rows, len(mine))), window, np.random.default_rng(0))
    steps = all_max(len(batches), ranks, device)
    was_training = model.training
    model.eval()
    state = model.initial_state(batches.rows, device)
    total_nats = 0.0
    count = 0
    for k in range(steps):
        batch = batches.batch(k)
        inputs = torch.from_numpy(batch.inputs).to(device)
        targets = torch.from_numpy(batch.targets).to(device)
        state = reset_rows(state, torch.from_numpy(batch.reset).to(device))
        logits, state = model(inputs, state)
        total_nats += float(
            nn.functional.cross_entropy(
                logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE, reduction="sum"
            )
        )
        count += int((targets != IGNORE).sum())
    model.train(was_training)
    total_nats, total_count = all_sum([total_nats, float(count)], ranks, device)
    return total_nats / max(total_count, 1.0) / LN2, int(total_count)
