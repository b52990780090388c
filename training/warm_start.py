"""Starting a training run from an exported model's weights (``antiphon train --init-from``).

A float32 model exported by :mod:`antiphon.training.export` holds every weight of its
:class:`~antiphon.training.model.NoteLSTM`: the embedding, one ONNX ``LSTM`` node per layer
and the head's ``MatMul`` and bias. Reading them back lets a small corpus (a few hundred
solos) fine-tune a model that already knows the codec's grammar of time shifts, velocities
and note-offs, instead of learning it from scratch. ONNX orders an LSTM's gates input,
output, forget, cell; torch orders them input, forget, cell, output.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import torch
from antiphon.daemon.codec import CodecConfig
from antiphon.training.model import ModelConfig, NoteLSTM
from google.protobuf.message import DecodeError
from onnx import numpy_helper

# Where each of torch's gate blocks (i, f, g, o) sits among ONNX's (i, o, f, c).
TORCH_GATES_FROM_ONNX = (0, 2, 3, 1)


class WarmStartError(ValueError):
    """A model file whose weights cannot start this run; the message says why."""


def _gates(onnx_weight: np.ndarray, hidden: int) -> np.ndarray:
    blocks = [onnx_weight[k * hidden : (k + 1) * hidden] for k in TORCH_GATES_FROM_ONNX]
    return np.concatenate(blocks)


def onnx_state_dict(path: Path) -> tuple[dict[str, torch.Tensor], ModelConfig, CodecConfig]:
    """The torch state dict of the float32 model in ``path``, with its shape and codec."""
    try:
        proto = onnx.load(str(path))
    except (OSError, DecodeError) as err:
        raise WarmStartError(f"{path}: not a readable ONNX model ({err})") from err
    meta = {p.key: p.value for p in proto.metadata_props}
    if "antiphon.model" not in meta or "antiphon.codec" not in meta:
        raise WarmStartError(f"{path}: not an Antiphon model (no antiphon.model metadata)")
    shape = json.loads(meta["antiphon.model"])
    config = ModelConfig(
        shape["vocab_size"], shape["embedding"], shape["hidden"], shape["layers"], 0.0
    )
    codec = CodecConfig.from_json(meta["antiphon.codec"])
    weights = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    lstm_nodes = [n for n in proto.graph.node if n.op_type == "LSTM"]
    matmuls = [n for n in proto.graph.node if n.op_type == "MatMul"]
    if len(lstm_nodes) != config.layers or len(matmuls) != 1:
        raise WarmStartError(
            f"{path}: not a float32 export ({len(lstm_nodes)} LSTM nodes, "
            f"{len(matmuls)} MatMul); start from the -fp32 file, not the int8 one"
        )
    hidden = config.hidden
    state: dict[str, np.ndarray] = {
        "embed.weight": weights["model.embed.weight"],
        "head.weight": weights[matmuls[0].input[1]].T,
        "head.bias": weights["model.head.bias"],
    }
    for layer, node in enumerate(lstm_nodes):
        w, r, b = (weights[name][0] for name in node.input[1:4])
        state[f"lstm.weight_ih_l{layer}"] = _gates(w, hidden)
        state[f"lstm.weight_hh_l{layer}"] = _gates(r, hidden)
        state[f"lstm.bias_ih_l{layer}"] = _gates(b[: 4 * hidden], hidden)
        state[f"lstm.bias_hh_l{layer}"] = _gates(b[4 * hidden :], hidden)
    tensors = {k: torch.from_numpy(np.array(v, np.float32)) for k, v in state.items()}
    return tensors, config, codec


def warm_start(model: NoteLSTM, codec: CodecConfig, path: Path) -> None:
    """Load ``path``'s weights into ``model``; the shapes and codecs must match."""
    state, config, model_codec = onnx_state_dict(path)
    mine = model.config
    if (config.vocab_size, config.embedding, config.hidden, config.layers) != (
        mine.vocab_size,
        mine.embedding,
        mine.hidden,
        mine.layers,
    ):
        raise WarmStartError(
            f"{path}: its shape (embedding {config.embedding}, {config.layers} x "
            f"{config.hidden}) differs from this run's (embedding {mine.embedding}, "
            f"{mine.layers} x {mine.hidden})"
        )
    if model_codec.to_json() != codec.to_json():
        raise WarmStartError(f"{path}: its codec differs from the corpus codec")
    model.load_state_dict(state)
