"""Loading an exported model: the ONNX session and what its metadata says about it.

The contract (written by ``antiphon export``): a graph with inputs ``token`` int64 [B, T],
``h`` and ``c`` float32 [L, B, H] and outputs ``logits`` float32 [B, V] (after the last of the
T tokens), ``h_out`` and ``c_out`` float32 [L, B, H]; metadata ``antiphon.format`` = "2" (or
"1", the earlier single-step graph: ``token`` [B], one token a run), ``antiphon.codec`` (the
:class:`~antiphon.daemon.codec.CodecConfig` JSON), ``antiphon.model`` (architecture, vocab_size,
embedding, hidden, layers) and ``antiphon.training`` (facts about the training run).

Everything that can be wrong with a file (missing, not ONNX, not an Antiphon model, shapes that
disagree with the metadata) is reported as one :class:`ModelError` line. Only onnxruntime is
used here; the ``onnx`` package belongs to the training extra.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnxruntime as ort
from antiphon.daemon.codec import CodecConfig, CodecError, Vocabulary
from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

FORMAT_VERSION = "2"  # token [B, T]: a sequence of tokens a run
STEP_FORMAT_VERSION = "1"  # token [B]: one token a run, still read

# onnxruntime raises these (all plain Exception subclasses) for files it cannot load.
_LOAD_ERRORS = (
    ort_errors.Fail,
    ort_errors.InvalidArgument,
    ort_errors.NoSuchFile,
    ort_errors.NoModel,
    ort_errors.InvalidProtobuf,
    ort_errors.InvalidGraph,
    ort_errors.NotImplemented,
    ort_errors.RuntimeException,
)


class ModelError(RuntimeError):
    """A model file that cannot be played with; the message is one line naming the file."""


@dataclass(frozen=True)
class ModelInfo:
    """What a model file says about itself."""

    path: Path
    codec: CodecConfig
    vocabulary: Vocabulary
    architecture: str
    embedding: int
    hidden: int
    layers: int
    training: dict[str, Any]
    feeds_sequences: bool  # format 2: ``token`` is [B, T]; format 1: [B]

    @property
    def state_shape(self) -> tuple[int, int, int]:
        """Shape of ``h`` and ``c`` for one performance: (layers, 1, hidden)."""
        return (self.layers, 1, self.hidden)


def session_options() -> ort.SessionOptions:
    """One intra-op and one inter-op thread, sequential: a step is too small to share out,
    and the daemon's other threads (MIDI callback, OSC) must keep a core."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: no warnings on stage
    return options


def load_model(
    path: str | Path, options: ort.SessionOptions | None = None
) -> tuple[ort.InferenceSession, ModelInfo]:
    """Open a model file and check it against the contract.

    Args:
        path: the ONNX file.
        options: onnxruntime's session options (default :func:`session_options`, the
            daemon's); ``antiphon.daemon.tools.seed_stability`` tries others.

    Raises:
        ModelError: the file is missing, unreadable, or not a compatible Antiphon model.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    try:
        session = ort.InferenceSession(
            str(path), options or session_options(), providers=["CPUExecutionProvider"]
        )
    except _LOAD_ERRORS as err:
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ModelError(f"{path}: not a readable ONNX model ({detail})") from err
    info = _read_metadata(path, session.get_modelmeta().custom_metadata_map)
    _check_signature(path, session, info)
    return session, info


def _read_metadata(path: Path, meta: dict[str, str]) -> ModelInfo:
    version = meta.get("antiphon.format")
    if version is None:
        raise ModelError(f"{path}: not an Antiphon model (no antiphon.format metadata)")
    if version not in (FORMAT_VERSION, STEP_FORMAT_VERSION):
        raise ModelError(
            f"{path}: model format {version!r}, this daemon reads "
            f"{STEP_FORMAT_VERSION!r} and {FORMAT_VERSION!r}"
        )
    try:
        codec = CodecConfig.from_json(meta["antiphon.codec"])
        model = json.loads(meta["antiphon.model"])
        training = json.loads(meta.get("antiphon.training", "{}"))
    except KeyError as err:
        raise ModelError(f"{path}: metadata {err.args[0]} is missing") from err
    except (CodecError, json.JSONDecodeError) as err:
        raise ModelError(f"{path}: unreadable metadata: {err}") from err
    if not isinstance(model, dict) or not isinstance(training, dict):
        raise ModelError(f"{path}: antiphon.model and antiphon.training must be JSON objects")
    vocabulary = Vocabulary(codec)
    try:
        architecture = str(model["architecture"])
        vocab_size, embedding = int(model["vocab_size"]), int(model["embedding"])
        hidden, layers = int(model["hidden"]), int(model["layers"])
    except (KeyError, TypeError, ValueError) as err:
        raise ModelError(f"{path}: antiphon.model lacks a valid {err}") from err
    if architecture != "lstm":
        raise ModelError(f"{path}: architecture {architecture!r}, this daemon plays 'lstm'")
    if vocab_size != vocabulary.size:
        raise ModelError(
            f"{path}: vocab_size {vocab_size} disagrees with its codec ({vocabulary.size} tokens)"
        )
    if hidden < 1 or layers < 1:
        raise ModelError(f"{path}: hidden and layers must be positive")
    return ModelInfo(
        path, codec, vocabulary, architecture, embedding, hidden, layers, training,
        feeds_sequences=version == FORMAT_VERSION,
    )  # fmt: skip


def _check_signature(path: Path, session: ort.InferenceSession, info: ModelInfo) -> None:
    layers, hidden, size = info.layers, info.hidden, info.vocabulary.size
    expected: dict[str, tuple[str, list[int | str]]] = {
        "token": ("tensor(int64)", ["B", "T"] if info.feeds_sequences else ["B"]),
        "h": ("tensor(float)", [layers, "B", hidden]),
        "c": ("tensor(float)", [layers, "B", hidden]),
        "logits": ("tensor(float)", ["B", size]),
        "h_out": ("tensor(float)", [layers, "B", hidden]),
        "c_out": ("tensor(float)", [layers, "B", hidden]),
    }
    found = {arg.name: arg for arg in [*session.get_inputs(), *session.get_outputs()]}
    inputs = {arg.name for arg in session.get_inputs()}
    if inputs != {"token", "h", "c"} or set(found) - inputs != {"logits", "h_out", "c_out"}:
        raise ModelError(
            f"{path}: graph has inputs {sorted(inputs)} and outputs "
            f"{sorted(set(found) - inputs)}; expected token, h, c -> logits, h_out, c_out"
        )
    for name, (dtype, dims) in expected.items():
        arg = found[name]
        if arg.type != dtype or len(arg.shape) != len(dims):
            raise ModelError(f"{path}: {name} is {arg.type} {arg.shape}, expected {dtype} {dims}")
        for got, want in zip(arg.shape, dims, strict=True):
            # A symbolic (str) or unknown (None) dimension is the dynamic batch; a fixed one
            # must agree with the metadata (a batch fixed at 1 is fine too).
            if isinstance(want, int) and isinstance(got, int) and got != want:
                raise ModelError(f"{path}: {name} has shape {arg.shape}, expected {dims}")
            if want == "B" and isinstance(got, int) and got != 1:
                raise ModelError(f"{path}: {name} has a fixed batch of {got}, expected 1 or B")
            if want == "T" and isinstance(got, int):
                raise ModelError(f"{path}: {name} has a fixed length of {got}, expected T")


def resolve_model_path(name: str, folders: Sequence[str | Path]) -> Path:
    """The model file ``name`` (a file name, optionally without ``.onnx``) in the first of
    ``folders`` that has it.

    The policy for remote model switching (OSC): only files inside those folders may be
    loaded, so a control surface cannot make the daemon open arbitrary paths.

    Raises:
        ModelError: the name leaves the folders or names no file in them.
    """
    file_name = name if name.endswith(".onnx") else name + ".onnx"
    looked_in = []
    for models_dir in folders:
        folder = Path(models_dir).resolve()
        candidate = (folder / name).resolve()
        if candidate.suffix != ".onnx":
            candidate = candidate.with_name(candidate.name + ".onnx")
        if not candidate.is_relative_to(folder):
            raise ModelError(f"model {name!r} is outside the models folder {folder}")
        if candidate.is_file():
            return candidate
        looked_in.append(str(folder))
    raise ModelError(f"no model {file_name} in {' or '.join(looked_in)}")
