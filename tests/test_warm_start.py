"""Starting a run from an exported model (``antiphon train --init-from``): the weights read
back from the ONNX file are the torch model's, and a file that cannot start the run says why.
And ``--velocity-spread``, the other knob fine-tuning on jazz-solos-dev needed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from antiphon.daemon.codec import CodecConfig, Vocabulary
from antiphon.training.export import export_model
from antiphon.training.model import NoteLSTM
from antiphon.training.ranks import Ranks
from antiphon.training.train import TrainConfig, epoch_batches
from antiphon.training.warm_start import WarmStartError, onnx_state_dict, warm_start

torch.set_num_threads(1)


def _exported(tmp_path: Path, quantize_int8: bool = False) -> tuple[NoteLSTM, CodecConfig, Path]:
    torch.manual_seed(3)
    codec = CodecConfig()
    model = NoteLSTM(Vocabulary(codec).size, embedding=16, hidden=24, layers=2).eval()
    path = tmp_path / ("int8.onnx" if quantize_int8 else "fp32.onnx")
    export_model(model, codec, {"data": "none"}, path, quantize_int8=quantize_int8)
    return model, codec, path


def test_the_weights_read_back_are_the_exported_models(tmp_path: Path) -> None:
    model, codec, path = _exported(tmp_path)
    fresh = NoteLSTM(Vocabulary(codec).size, embedding=16, hidden=24, layers=2)
    warm_start(fresh, codec, path)
    expected = model.state_dict()
    got = fresh.state_dict()
    assert set(got) == set(expected)
    for name, tensor in expected.items():
        assert torch.equal(got[name], tensor), name
    tokens = torch.randint(0, Vocabulary(codec).size, (1, 40))
    with torch.no_grad():  # the exporter leaves a model in training mode: both evaluate
        assert torch.equal(fresh.eval()(tokens)[0], model.eval()(tokens)[0])


def test_a_quantized_model_or_another_shape_cannot_start_a_run(tmp_path: Path) -> None:
    _, codec, int8 = _exported(tmp_path, quantize_int8=True)
    with pytest.raises(WarmStartError, match="fp32"):
        onnx_state_dict(int8)
    _, _, fp32 = _exported(tmp_path)
    other = NoteLSTM(Vocabulary(codec).size, embedding=16, hidden=32, layers=2)
    with pytest.raises(WarmStartError, match="shape"):
        warm_start(other, codec, fp32)
    with pytest.raises(WarmStartError, match="codec"):
        warm_start(
            NoteLSTM(Vocabulary(codec).size, embedding=16, hidden=24, layers=2),
            CodecConfig(include_drums=True),
            fp32,
        )
    (tmp_path / "not.onnx").write_text("no model here\n")
    with pytest.raises(WarmStartError, match="not a readable ONNX model"):
        onnx_state_dict(tmp_path / "not.onnx")


def test_velocity_spread_zero_leaves_every_velocity_as_played() -> None:
    vocabulary = Vocabulary(CodecConfig())
    notes = np.asarray([(60 + i % 7, 0.2 * i, 0.2 * i + 0.15, 112) for i in range(40)], float)
    velocity_tokens: dict[float, set[int]] = {}
    for spread in (0.0, 0.2):
        config = TrainConfig("corpus", "run", velocity_spread=spread, batch_size=1)
        found = set()
        for epoch in range(6):
            batches = epoch_batches([notes], vocabulary, config, epoch, Ranks())
            tokens = np.concatenate([b.inputs.ravel() for b in batches])
            found |= {int(t) for t in tokens if t >= vocabulary.velocity_base}
        velocity_tokens[spread] = found
    assert len(velocity_tokens[0.0]) == 1  # 112, every epoch, whatever else is augmented
    assert len(velocity_tokens[0.2]) > 1
