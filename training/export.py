"""Export a note LSTM to the daemon's self-describing single-step ONNX model.

The graph follows the ONNX contract: inputs ``token`` int64 [B], ``h``/``c`` float32 [L, B, H];
outputs ``logits`` [B, V], ``h_out``, ``c_out``; B dynamic. The metadata carries the codec,
the model shape and the training facts, so the daemon needs nothing but the file.
"""

from __future__ import annotations

import io
import json
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import onnx
import torch
from antiphon.daemon.codec import CodecConfig
from antiphon.training.model import ModelConfig, NoteLSTM, NoteLSTMStep

FORMAT_VERSION = "1"
OPSET = 17
INPUTS = ("token", "h", "c")
OUTPUTS = ("logits", "h_out", "c_out")


class ExportError(RuntimeError):
    """A model that cannot be exported or does not check out; the message says why."""


def model_metadata(config: ModelConfig) -> dict[str, Any]:
    return {
        "architecture": "lstm",
        "vocab_size": config.vocab_size,
        "embedding": config.embedding,
        "hidden": config.hidden,
        "layers": config.layers,
    }


def contract_metadata(
    config: ModelConfig, codec: CodecConfig, facts: Mapping[str, Any]
) -> dict[str, str]:
    """The ``metadata_props`` the daemon reads."""
    return {
        "antiphon.format": FORMAT_VERSION,
        "antiphon.codec": codec.to_json(),
        "antiphon.model": json.dumps(model_metadata(config), sort_keys=True),
        "antiphon.training": json.dumps(dict(facts), sort_keys=True, default=str),
    }


def set_metadata(proto: onnx.ModelProto, metadata: Mapping[str, str]) -> None:
    """Replace the model's metadata_props entries of the given keys."""
    kept = [p for p in proto.metadata_props if p.key not in metadata]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for key, value in metadata.items():
        proto.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))


def step_graph(model: NoteLSTM, opset: int = OPSET) -> onnx.ModelProto:
    """The single-step ONNX graph of ``model`` (TorchScript exporter, dynamic batch)."""
    model = model.eval()
    config = model.config
    token = torch.zeros(1, dtype=torch.int64)
    h = torch.zeros(config.layers, 1, config.hidden)
    c = torch.zeros(config.layers, 1, config.hidden)
    batch = "B"
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # The warning is about LSTMs exported without h0/c0 inputs; ours has them.
        warnings.filterwarnings("ignore", message="Exporting a model to ONNX with a batch_size")
        # Shape checks inside nn.LSTM are traced as constants; the shapes are fixed by design.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(
            NoteLSTMStep(model),
            (token, h, c),
            buffer,  # type: ignore[arg-type]  # file-like objects are accepted
            input_names=list(INPUTS),
            output_names=list(OUTPUTS),
            dynamic_axes={
                "token": {0: batch},
                "h": {1: batch},
                "c": {1: batch},
                "logits": {0: batch},
                "h_out": {1: batch},
                "c_out": {1: batch},
            },
            opset_version=opset,
            dynamo=False,
        )
    return onnx.load_from_string(buffer.getvalue())


def export_model(
    model: NoteLSTM,
    codec: CodecConfig,
    facts: Mapping[str, Any],
    out: Path,
    quantize_int8: bool = False,
) -> Path:
    """Write ``model`` to ``out`` as a checked, self-describing ONNX file; returns the path.

    With ``quantize_int8`` the weights are dynamically quantized to int8 (onnxruntime), same
    metadata.
    """
    proto = step_graph(model)
    metadata = contract_metadata(model.config, codec, facts)
    set_metadata(proto, metadata)
    proto.producer_name = "antiphon"
    out.parent.mkdir(parents=True, exist_ok=True)
    if quantize_int8:
        proto = _quantized(proto, metadata)
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as err:
        raise ExportError(f"exported graph does not check out: {err}") from err
    onnx.save(proto, str(out))
    return out


def _quantized(proto: onnx.ModelProto, metadata: Mapping[str, str]) -> onnx.ModelProto:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        source, target = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(proto, str(source))
        quantize_dynamic(source, target, weight_type=QuantType.QInt8)
        quantized = onnx.load(str(target))
    set_metadata(quantized, metadata)
    return quantized


def export_checkpoint(
    checkpoint: Path,
    out: Path,
    quantize_int8: bool = False,
    extra_facts: Mapping[str, Any] | None = None,
) -> Path:
    """Export a training checkpoint; its training facts, updated by ``extra_facts``, go along."""
    from antiphon.training.checkpoint import load_checkpoint, model_from_checkpoint

    saved = load_checkpoint(checkpoint)
    model, codec = model_from_checkpoint(saved)
    facts = {"trained": True, **json.loads(saved.get("facts", "{}"))}
    facts["checkpoint"] = checkpoint.name
    facts.update(extra_facts or {})
    if quantize_int8:
        facts["quantization"] = "int8 dynamic (onnxruntime)"
    return export_model(model, codec, facts, out, quantize_int8)
