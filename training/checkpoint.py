"""Checkpoint files: what :class:`~antiphon.training.train.Trainer` writes to resume a run
exactly, and what ``antiphon export`` reads a model from.

A checkpoint is a ``torch.save`` dictionary of tensors and plain data only (it loads with
``weights_only=True``): ``format``, ``model_config``, ``codec`` (JSON), ``train_config``,
``model``, ``optimizer``, ``scheduler``, ``progress``, ``per_rank`` (each rank's RNG and
recurrent state) and ``facts`` (JSON: what an exported model says about its training).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from antiphon.daemon.codec import CodecConfig
from antiphon.training.model import ModelConfig, NoteLSTM

CHECKPOINT_FORMAT = 1


class TrainingError(RuntimeError):
    """A training run that cannot start or resume, or a checkpoint that cannot be read; the
    message says why."""


def write_checkpoint(payload: dict[str, Any], out: Path, names: Sequence[str]) -> None:
    """``out/<name>`` for each name; each written whole or not at all (through a .tmp file)."""
    payload = {"format": CHECKPOINT_FORMAT, **payload}
    for name in names:
        tmp = out / f"{name}.tmp"
        torch.save(payload, tmp)
        tmp.replace(out / name)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint written by :func:`write_checkpoint` (tensors and plain data only)."""
    try:
        saved: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as err:
        raise TrainingError(f"{path}: no such checkpoint") from err
    except (RuntimeError, EOFError, OSError) as err:
        raise TrainingError(f"{path}: not a readable checkpoint ({err})") from err
    if not isinstance(saved, dict) or saved.get("format") != CHECKPOINT_FORMAT:
        raise TrainingError(f"{path}: not an Antiphon checkpoint")
    return saved


def model_from_checkpoint(saved: dict[str, Any]) -> tuple[NoteLSTM, CodecConfig]:
    """The checkpoint's model, in eval mode, and the codec it was trained with."""
    model = NoteLSTM.from_config(ModelConfig.from_dict(saved["model_config"]))
    model.load_state_dict(saved["model"])
    model.eval()
    return model, CodecConfig.from_json(saved["codec"])
