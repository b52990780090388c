"""The note LSTM: token embedding, stacked LSTM, linear head to next-token logits.

Training runs it over windows (``NoteLSTM``); the daemon runs it one token at a time with
the recurrent state carried through the whole performance (``NoteLSTMStep``, the graph that
is exported to ONNX).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

State = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class ModelConfig:
    """Shape of a :class:`NoteLSTM`; saved in checkpoints and in the ONNX metadata."""

    vocab_size: int
    embedding: int = 128
    hidden: int = 256
    layers: int = 2
    dropout: float = 0.1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        return cls(**data)


class NoteLSTM(nn.Module):
    """Embedding -> stacked LSTM (batch first, dropout between layers) -> logits."""

    def __init__(
        self,
        vocab_size: int,
        embedding: int = 128,
        hidden: int = 256,
        layers: int = 2,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.config = ModelConfig(vocab_size, embedding, hidden, layers, dropout)
        self.embed = nn.Embedding(vocab_size, embedding)
        self.lstm = nn.LSTM(
            embedding,
            hidden,
            num_layers=layers,
            batch_first=True,
            dropout=dropout if layers > 1 else 0.0,
        )
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, vocab_size)

    @classmethod
    def from_config(cls, config: ModelConfig) -> NoteLSTM:
        return cls(
            config.vocab_size, config.embedding, config.hidden, config.layers, config.dropout
        )

    def initial_state(self, batch: int, device: torch.device | None = None) -> State:
        """The zero state the daemon starts a performance with."""
        shape = (self.config.layers, batch, self.config.hidden)
        weight = self.head.weight
        return (
            torch.zeros(shape, dtype=weight.dtype, device=device or weight.device),
            torch.zeros(shape, dtype=weight.dtype, device=device or weight.device),
        )

    def forward(
        self, tokens: torch.Tensor, state: State | None = None
    ) -> tuple[torch.Tensor, State]:
        """Logits [B, T, V] for tokens [B, T], and the state after the last token."""
        x = self.drop(self.embed(tokens))
        out, new_state = self.lstm(x, state)
        return self.head(self.drop(out)), new_state

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())


class NoteLSTMStep(nn.Module):
    """One step of a :class:`NoteLSTM` with the ONNX contract's signature.

    ``token`` int64 [B], ``h``/``c`` float32 [L, B, H] -> ``logits`` [B, V], ``h_out``,
    ``c_out``. Shares the weights of the wrapped model; always evaluates without dropout.
    """

    def __init__(self, model: NoteLSTM) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, token: torch.Tensor, h: torch.Tensor, c: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits, (h_out, c_out) = self.model(token.unsqueeze(1), (h, c))
        return logits.squeeze(1), h_out, c_out
