"""Export: the ONNX graph follows the contract and computes what the torch model computes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from antiphon.daemon.codec import CodecConfig, Vocabulary, encode_notes, notes_from_array
from antiphon.training import export_command
from antiphon.training.export import contract_metadata, export_model, set_metadata, step_graph
from antiphon.training.model import NoteLSTM, NoteLSTMStep
from antiphon.training.train import TrainConfig, train
from onnxruntime.quantization import QuantType, quantize_dynamic

from tests.tiny_corpus import scale_notes, write_tiny_corpus

torch.set_num_threads(1)


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _piece_tokens(vocabulary: Vocabulary, count: int) -> np.ndarray:
    """The first ``count`` tokens of a scale-and-chords exercise (a plausible performance)."""
    tokens = encode_notes(notes_from_array(scale_notes(48, 200, 0.17, seed=1)), vocabulary)
    assert len(tokens) >= count
    return tokens[:count].astype(np.int64)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[NoteLSTM, CodecConfig, Path]:
    torch.manual_seed(0)
    codec = CodecConfig(velocity_bins=16)  # not the default, so the metadata must carry it
    model = NoteLSTM(Vocabulary(codec).size).eval()
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    export_model(model, codec, {"data": "exercises", "steps": 0}, path)
    return model, codec, path


def test_onnx_steps_match_torch_over_500_tokens_of_a_piece_with_state_carried(
    exported: tuple[NoteLSTM, CodecConfig, Path],
) -> None:
    model, codec, path = exported
    session = _session(path)
    step = NoteLSTMStep(model).eval()
    shape = (model.config.layers, 1, model.config.hidden)
    h_t, c_t = torch.zeros(shape), torch.zeros(shape)
    h_o, c_o = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    worst = 0.0
    with torch.no_grad():
        for token in _piece_tokens(Vocabulary(codec), 500):
            logits_t, h_t, c_t = step(torch.tensor([token]), h_t, c_t)
            logits_o, h_o, c_o = session.run(
                None, {"token": np.array([[token]]), "h": h_o, "c": c_o}
            )
            worst = max(worst, float(np.abs(logits_o - logits_t.numpy()).max()))
    assert worst <= 1e-4
    assert float(np.abs(h_o - h_t.numpy()).max()) <= 1e-4


def test_a_run_of_tokens_gives_the_logits_and_state_after_the_last_as_torch_does(
    exported: tuple[NoteLSTM, CodecConfig, Path],
) -> None:
    model, codec, path = exported
    session = _session(path)
    tokens = _piece_tokens(Vocabulary(codec), 40)
    shape = (model.config.layers, 1, model.config.hidden)
    h, c = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    with torch.no_grad():
        ht, ct = torch.zeros(shape), torch.zeros(shape)
        for start in range(0, 40, 5):
            run = tokens[start : start + 5]
            logits, h, c = session.run(None, {"token": run[None], "h": h, "c": c})
            expected, (ht, ct) = model(torch.from_numpy(run)[None], (ht, ct))
            assert logits.shape == (1, Vocabulary(codec).size)
            assert np.abs(logits - expected[:, -1].numpy()).max() <= 1e-4
    assert np.abs(h - ht.numpy()).max() <= 1e-4 and np.abs(c - ct.numpy()).max() <= 1e-4


def test_graph_checks_out_and_has_the_contract_inputs_outputs_and_dynamic_batch(
    exported: tuple[NoteLSTM, CodecConfig, Path],
) -> None:
    model, codec, path = exported
    onnx.checker.check_model(onnx.load(str(path)))
    session = _session(path)
    layers, hidden, vocab = model.config.layers, model.config.hidden, Vocabulary(codec).size
    assert [(i.name, i.type) for i in session.get_inputs()] == [
        ("token", "tensor(int64)"),
        ("h", "tensor(float)"),
        ("c", "tensor(float)"),
    ]
    assert [o.name for o in session.get_outputs()] == ["logits", "h_out", "c_out"]
    tokens = np.array([1, 300, vocab - 1], dtype=np.int64)
    state = np.random.default_rng(0).normal(size=(layers, 3, hidden)).astype(np.float32)
    logits, h_out, c_out = session.run(None, {"token": tokens[:, None], "h": state, "c": state})
    assert logits.shape == (3, vocab) and h_out.shape == c_out.shape == (layers, 3, hidden)
    with torch.no_grad():
        expected, _, _ = NoteLSTMStep(model)(
            torch.from_numpy(tokens), torch.from_numpy(state), torch.from_numpy(state)
        )
    assert np.abs(logits - expected.numpy()).max() <= 1e-4


def test_metadata_round_trips_codec_model_and_training_facts(
    exported: tuple[NoteLSTM, CodecConfig, Path],
) -> None:
    model, codec, path = exported
    meta = _session(path).get_modelmeta().custom_metadata_map
    assert meta["antiphon.format"] == "2"
    assert CodecConfig.from_json(meta["antiphon.codec"]) == codec
    assert json.loads(meta["antiphon.model"]) == {
        "architecture": "lstm",
        "vocab_size": Vocabulary(codec).size,
        "embedding": model.config.embedding,
        "hidden": model.config.hidden,
        "layers": model.config.layers,
    }
    assert json.loads(meta["antiphon.training"]) == {"data": "exercises", "steps": 0}


def _export_args(checkpoint: Path, out: Path, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    export_command.add_arguments(parser)
    return parser.parse_args([str(checkpoint), "-o", str(out), *extra])


def test_export_command_writes_checkpoint_facts_and_extra_facts_fp32_and_int8(
    tmp_path: Path,
) -> None:
    corpus = write_tiny_corpus(tmp_path / "corpus", performances=4)
    config = TrainConfig(
        str(corpus), str(tmp_path / "run"), epochs=1, batch_size=2, window=16,
        embedding=16, hidden=32, threads=1, max_steps=3,
    )  # fmt: skip
    train(config)
    facts = tmp_path / "facts.json"
    facts.write_text(json.dumps({"license": "CC BY-NC-SA 4.0"}))
    fp32, int8 = tmp_path / "m.onnx", tmp_path / "m.int8.onnx"
    checkpoint = tmp_path / "run" / "last.pt"
    assert export_command.run(_export_args(checkpoint, fp32, "--facts", str(facts))) == 0
    assert export_command.run(_export_args(checkpoint, int8, "--quantize-int8")) == 0
    training = json.loads(_session(fp32).get_modelmeta().custom_metadata_map["antiphon.training"])
    assert training["steps"] == 3 and training["trained"] is True
    assert training["license"] == "CC BY-NC-SA 4.0"
    meta8 = _session(int8).get_modelmeta().custom_metadata_map
    assert json.loads(meta8["antiphon.model"])["hidden"] == 32
    assert "int8" in json.loads(meta8["antiphon.training"])["quantization"]
    inputs = {"token": np.array([[60]]), "h": np.zeros((2, 1, 32), np.float32)}
    inputs["c"] = inputs["h"]
    logits32 = _session(fp32).run(None, inputs)[0]
    logits8 = _session(int8).run(None, inputs)[0]
    assert np.corrcoef(logits32.ravel(), logits8.ravel())[0, 1] > 0.95


def test_export_of_a_missing_or_foreign_checkpoint_is_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    for checkpoint in (tmp_path / "missing.pt", foreign):
        assert export_command.run(_export_args(checkpoint, tmp_path / "x.onnx")) == 1
        error = capsys.readouterr().err
        assert error.startswith("antiphon export: ") and error.count("\n") == 1
    assert not (tmp_path / "x.onnx").exists()


def _format_1_file(model: NoteLSTM, codec: CodecConfig, out: Path, int8: bool) -> Path:
    """A model file as exports before format 2 wrote it: the single-step graph, format "1"."""
    proto = step_graph(model)
    set_metadata(proto, {**contract_metadata(model.config, codec, {}), "antiphon.format": "1"})
    onnx.save(proto, str(out))
    if int8:
        quantize_dynamic(out, out, weight_type=QuantType.QInt8)
    return out


@pytest.mark.parametrize("int8", [False, True])
def test_an_upgraded_format_1_file_gives_the_same_bits_one_token_a_run(
    exported: tuple[NoteLSTM, CodecConfig, Path], tmp_path: Path, int8: bool
) -> None:
    model, codec, _ = exported
    old = _format_1_file(model, codec, tmp_path / "old.onnx", int8)
    new = tmp_path / "new.onnx"
    assert export_command.run(_export_args(old, new, "--upgrade")) == 0
    meta = _session(new).get_modelmeta().custom_metadata_map
    assert meta["antiphon.format"] == "2"
    assert (
        meta["antiphon.codec"]
        == _session(old).get_modelmeta().custom_metadata_map["antiphon.codec"]
    )
    before, after = _session(old), _session(new)
    shape = (model.config.layers, 1, model.config.hidden)
    state_old = state_new = (np.zeros(shape, np.float32), np.zeros(shape, np.float32))
    for token in _piece_tokens(Vocabulary(codec), 200):
        logits_old, *state_old = before.run(
            None, {"token": np.array([token]), "h": state_old[0], "c": state_old[1]}
        )
        logits_new, *state_new = after.run(
            None, {"token": np.array([[token]]), "h": state_new[0], "c": state_new[1]}
        )
        assert np.array_equal(logits_old, logits_new)
    assert np.array_equal(state_old[0], state_new[0]) and np.array_equal(state_old[1], state_new[1])


def test_upgrade_refuses_what_is_not_a_format_1_file(
    exported: tuple[NoteLSTM, CodecConfig, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, _, path = exported
    assert export_command.run(_export_args(path, tmp_path / "again.onnx", "--upgrade")) == 1
    assert "only format '1' files are upgraded" in capsys.readouterr().err
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07not a model")
    assert export_command.run(_export_args(garbage, tmp_path / "out.onnx", "--upgrade")) == 1
    assert "not a readable ONNX file" in capsys.readouterr().err
    assert not (tmp_path / "again.onnx").exists() and not (tmp_path / "out.onnx").exists()
