"""Export a note LSTM to the daemon's self-describing ONNX model.

The graph follows the ONNX contract (format 2): inputs ``token`` int64 [B, T], ``h``/``c``
float32 [L, B, H]; outputs ``logits`` [B, V] after the last of the T tokens, ``h_out``,
``c_out``; B and T dynamic. T = 1 is one step; the daemon feeds a heard event's tokens
(time shift, velocity, note) in one run when it plays along, which costs about what one
step costs. The metadata carries the codec, the model shape and the training facts, so the
daemon needs nothing but the file.

Format 1 (``token`` [B], one step a run) is what exports before 2026-12-07 wrote; the daemon
still reads it, and :func:`upgrade_file` (``antiphon export --upgrade``) rewrites such a file
as format 2 with its weights, and the results of a one-token run, unchanged.
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
from antiphon.daemon.musician.model.model_file import FORMAT_VERSION, STEP_FORMAT_VERSION
from antiphon.training.model import ModelConfig, NoteLSTM, NoteLSTMStep
from google.protobuf.message import DecodeError

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


def _rename_uses(graph: onnx.GraphProto, old: str, new: str) -> None:
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new
    for output in graph.output:
        if output.name == old:
            output.name = new


def sequence_graph(proto: onnx.ModelProto) -> onnx.ModelProto:
    """The format-1 single-step graph ``proto`` (fp32 or int8) rewritten in place to take
    ``token`` [B, T] and give the logits after the last token.

    Two edits, nothing else touched: the ``Unsqueeze`` that made ``token`` [B] a sequence of
    one goes (``token`` is the sequence), and the LSTM's last output [B, T, H] is cut to its
    last step before the head, whose ``Squeeze`` then goes. With T = 1 every kernel sees the
    same numbers as before, so a one-token run gives the same bits as the step graph did.
    """
    graph = proto.graph
    nodes = list(graph.node)
    produced_by = {name: node for node in nodes for name in node.output}
    lift = [n for n in nodes if n.op_type == "Unsqueeze" and n.input[0] == "token"]
    squeeze = produced_by.get("logits")
    # The batch-first transpose of the last LSTM's output: a Transpose fed by a Squeeze of
    # an LSTM's (or a quantized LSTM's) sequence output.
    to_head = [
        n
        for n in nodes
        if n.op_type == "Transpose"
        and (source := produced_by.get(n.input[0])) is not None
        and source.op_type == "Squeeze"
        and (lstm := produced_by.get(source.input[0])) is not None
        and lstm.op_type in ("LSTM", "DynamicQuantizeLSTM")
    ]
    if len(lift) != 1 or squeeze is None or squeeze.op_type != "Squeeze" or len(to_head) != 1:
        raise ExportError("not a single-step graph of this exporter (format 1)")
    _rename_uses(graph, lift[0].output[0], "token")
    graph.node.remove(lift[0])
    graph.node.remove(squeeze)
    head_input, head_output = to_head[0].output[0], squeeze.input[0]
    last_step = head_input + "_last"
    index = onnx.helper.make_tensor("antiphon_last_index", onnx.TensorProto.INT64, [], [-1])
    graph.initializer.append(index)
    _rename_uses(graph, head_input, last_step)
    position = list(graph.node).index(to_head[0]) + 1
    graph.node.insert(
        position,
        onnx.helper.make_node(
            "Gather", [head_input, index.name], [last_step], axis=1, name="antiphon_last_step"
        ),
    )
    for node in graph.node:
        for i, name in enumerate(node.output):
            if name == head_output:
                node.output[i] = "logits"
    token = next(i for i in graph.input if i.name == "token")
    dims = token.type.tensor_type.shape.dim
    del dims[:]
    dims.add().dim_param = "B"
    dims.add().dim_param = "T"
    del graph.value_info[:]  # intermediate shapes of the step graph, now stale
    return proto


def upgrade_file(source: Path, out: Path) -> Path:
    """Rewrite a format-1 model file as format 2 (:func:`sequence_graph`), metadata kept."""
    try:
        proto = onnx.load(str(source))
    except (OSError, DecodeError) as err:
        raise ExportError(f"{source}: not a readable ONNX file ({err})") from err
    metadata = {p.key: p.value for p in proto.metadata_props}
    version = metadata.get("antiphon.format")
    if version != STEP_FORMAT_VERSION:
        raise ExportError(
            f"{source}: format {version!r}; only format {STEP_FORMAT_VERSION!r} files are upgraded"
        )
    sequence_graph(proto)
    set_metadata(proto, {"antiphon.format": FORMAT_VERSION})
    _checked(proto)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(out))
    return out


def _checked(proto: onnx.ModelProto) -> None:
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as err:
        raise ExportError(f"exported graph does not check out: {err}") from err


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
    proto = sequence_graph(step_graph(model))
    metadata = contract_metadata(model.config, codec, facts)
    set_metadata(proto, metadata)
    proto.producer_name = "antiphon"
    out.parent.mkdir(parents=True, exist_ok=True)
    if quantize_int8:
        proto = _quantized(proto, metadata)
    _checked(proto)
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
