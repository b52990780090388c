"""``antiphon eval``: the exported model scored through onnxruntime, carried and windowed,
beside the Markov baseline, on a tiny corpus with a tiny real exported LSTM."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from antiphon.daemon.cli import COMMANDS
from antiphon.daemon.codec import CodecConfig, Vocabulary
from antiphon.training import eval_command
from antiphon.training.corpus import load_split
from antiphon.training.evaluate import (
    EvalError,
    EvalReport,
    OnnxScorer,
    evaluate,
    load_pieces,
    piece_stream,
    windows,
)
from antiphon.training.export import export_model
from antiphon.training.markov import Score
from antiphon.training.model import NoteLSTM

from tests.tiny_corpus import write_tiny_corpus

torch.set_num_threads(1)


def main(argv: list[str]) -> int:
    """``antiphon eval ARGV`` as the CLI runs it (its subparser, then ``run``)."""
    assert argv[0] == "eval"
    parser = argparse.ArgumentParser(prog="antiphon eval")
    eval_command.add_arguments(parser)
    return eval_command.run(parser.parse_args(argv[1:]))


def _tiny_model(codec: CodecConfig, seed: int = 0) -> NoteLSTM:
    torch.manual_seed(seed)
    return NoteLSTM(Vocabulary(codec).size, embedding=16, hidden=24, layers=2, dropout=0.0)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 30 pieces: 3 in the test split, 24 in train.
    return write_tiny_corpus(tmp_path_factory.mktemp("corpus"), performances=30, beats=40)


@pytest.fixture(scope="module")
def lstm(corpus: Path) -> NoteLSTM:
    """A tiny LSTM fitted a little to the train split, so its state carries real information."""
    model = _tiny_model(CodecConfig())
    pieces = _pieces(corpus, "train")
    length = min(len(p) for p in pieces)
    batch = torch.as_tensor(np.stack([p[:length] for p in pieces]), dtype=torch.int64)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.03)
    for _ in range(40):
        logits, _ = model(batch[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), batch[:, 1:])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model.eval()


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory, lstm: NoteLSTM) -> Path:
    out = tmp_path_factory.mktemp("model") / "tiny.onnx"
    return export_model(lstm, CodecConfig(), {"trained": False}, out)


def _torch_score(model: NoteLSTM, segments: list[np.ndarray]) -> Score:
    """Bits and hits of each segment run from a zero state by torch over the whole segment."""
    total = Score(0.0, 0, 0)
    with torch.no_grad():
        for tokens in segments:
            inputs = torch.as_tensor(tokens[None, :-1], dtype=torch.int64)
            targets = torch.as_tensor(tokens[1:], dtype=torch.int64)
            logits, _ = model(inputs)
            log_probs = torch.log_softmax(logits[0].double(), dim=-1)
            nats = -log_probs[torch.arange(len(targets)), targets].sum().item()
            hits = int((logits[0].argmax(dim=-1) == targets).sum())
            total = total + Score(nats / np.log(2.0), len(targets), hits)
    return total


def _pieces(corpus: Path, split: str = "test") -> list[np.ndarray]:
    return [p.tokens for p in load_pieces(corpus, split, Vocabulary(CodecConfig()))]


def test_carried_score_is_the_torch_model_run_over_each_whole_performance(
    corpus: Path, model_path: Path, lstm: NoteLSTM
) -> None:
    pieces = load_pieces(corpus, "test", Vocabulary(CodecConfig()))
    tokens, starts, targets = piece_stream(pieces)
    onnx = OnnxScorer(model_path, threads=1).score(tokens, starts, targets, batch=2)
    expected = _torch_score(lstm, [p.tokens for p in pieces])
    assert onnx.tokens == expected.tokens == sum(len(p.tokens) - 1 for p in pieces)
    assert onnx.bits == pytest.approx(expected.bits, rel=1e-5)
    assert onnx.correct == expected.correct


def test_windowed_score_zeroes_the_state_every_window(
    corpus: Path, model_path: Path, lstm: NoteLSTM
) -> None:
    pieces = _pieces(corpus)
    tokens, starts, targets = piece_stream(load_pieces(corpus, "test", Vocabulary(CodecConfig())))
    window = 16
    onnx = OnnxScorer(model_path, threads=1).score(tokens, *windows(starts, targets, window), 3)
    # Window k of a piece feeds tokens k*W .. k*W+W-1 and predicts k*W+1 .. k*W+W.
    segments = [p[k : k + window + 1] for p in pieces for k in range(0, len(p) - 1, window)]
    expected = _torch_score(lstm, segments)
    assert onnx.tokens == expected.tokens == sum(len(p) - 1 for p in pieces)
    assert onnx.bits == pytest.approx(expected.bits, rel=1e-5)
    assert onnx.correct == expected.correct


def test_windows_cover_every_target_once_in_order() -> None:
    starts, targets = np.array([0, 10, 40]), np.array([9, 29, 0])
    first, length = windows(starts, targets, 8)
    assert first.tolist() == [0, 8, 10, 18, 26, 34]
    assert length.tolist() == [8, 1, 8, 8, 8, 5]


def test_batch_size_does_not_change_the_scores(corpus: Path, model_path: Path) -> None:
    tokens, starts, targets = piece_stream(load_pieces(corpus, "test", Vocabulary(CodecConfig())))
    scorer = OnnxScorer(model_path, threads=1)
    one = scorer.score(tokens, starts, targets, batch=1)
    for batch in (2, 3, 32):
        other = scorer.score(tokens, starts, targets, batch=batch)
        assert other.tokens == one.tokens
        assert other.bits == pytest.approx(one.bits, rel=1e-5)
        assert other.correct == one.correct


@pytest.fixture(scope="module")
def report(corpus: Path, model_path: Path) -> EvalReport:
    return evaluate(model_path, corpus, window=8, max_order=4, batch=2, threads=1)


def test_carried_and_windowed_agree_exactly_when_a_window_holds_every_performance(
    corpus: Path, model_path: Path
) -> None:
    longest = max(len(p) for p in _pieces(corpus))
    wide = evaluate(model_path, corpus, window=longest, max_order=1, batch=2, threads=1)
    assert wide.carried == wide.windowed
    assert wide.drift_ratio == 1.0


def test_every_score_covers_the_same_tokens_and_bits_per_note_follow_from_bits_per_token(
    corpus: Path, report: EvalReport
) -> None:
    pieces = _pieces(corpus)
    tokens = sum(len(p) - 1 for p in pieces)
    notes = sum(len(n) for _, n in load_split(corpus, "test"))
    assert report.notes == notes
    assert report.tokens == tokens
    assert report.windowed.tokens == tokens
    assert sorted(report.markov) == [1, 2, 3, 4]
    for score in [report.carried, report.windowed, *report.markov.values()]:
        assert score.tokens == tokens
        assert report.bits_per_note(score) == pytest.approx(score.bits_per_token * tokens / notes)


def test_both_models_learn_the_exercises_far_below_a_uniform_guess(report: EvalReport) -> None:
    uniform_bits = np.log2(Vocabulary(CodecConfig()).size)
    assert report.markov[report.best_order].bits_per_token < 0.5 * uniform_bits
    assert report.carried.bits_per_token < 0.75 * uniform_bits
    assert report.markov[report.best_order].accuracy > 0.3


def test_verdicts_follow_the_acceptance_thresholds() -> None:
    def made(carried: float, windowed: float) -> EvalReport:
        return EvalReport(
            model="m", corpus="c", split="test", performances=1, notes=10, window=8,
            carried=Score(carried * 100, 100, 10), windowed=Score(windowed * 100, 100, 10),
            markov={1: Score(1200.0, 100, 5), 2: Score(1000.0, 100, 5)},
            markov_train_tokens=1000, seconds={},
        )  # fmt: skip

    assert made(8.4, 8.2).best_order == 2
    assert made(8.4, 8.2).beats_markov  # 16% below 10 bits
    assert not made(8.6, 8.6).beats_markov  # 14% below
    assert made(8.4, 8.2).no_drift  # 2.4% above windowed
    assert not made(8.4, 8.0).no_drift  # 5% above windowed
    assert made(8.0, 8.4).no_drift  # carried better than windowed is no drift


def test_eval_command_prints_the_table_and_writes_the_json(
    corpus: Path, model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "eval.json"
    argv = ["eval", str(model_path), str(corpus), "--json", str(out), "--window", "8"]
    rc = main([*argv, "--max-order", "3", "--batch", "2", "--threads", "1"])
    printed = capsys.readouterr().out
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["split"] == "test"
    assert sorted(data["markov"]["orders"]) == ["1", "2", "3"]
    lines = {line.split("  ")[0]: line for line in printed.splitlines()}
    carried = lines["LSTM carried (as the daemon)"].split()
    assert float(carried[-3]) == pytest.approx(data["carried"]["bits_per_token"], abs=1e-4)
    assert float(carried[-1]) == pytest.approx(data["carried"]["accuracy"], abs=1e-3)
    order = data["markov"]["best_order"]
    assert f"best Markov: order {order}" in printed
    best = data["markov"]["orders"][str(order)]["bits_per_token"]
    assert data["improvement_over_markov"] == pytest.approx(
        1 - data["carried"]["bits_per_token"] / best
    )
    assert data["carried_over_windowed"] == pytest.approx(
        data["carried"]["bits_per_token"] / data["windowed"]["bits_per_token"]
    )
    verdict = "PASS" if data["acceptance"]["beats_markov"] else "FAIL"
    assert f"(needs >= 15% fewer): {verdict}" in printed


def test_a_model_of_another_codec_is_refused_in_one_line(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    codec = CodecConfig(velocity_bins=16)
    path = export_model(_tiny_model(codec), codec, {}, tmp_path / "other.onnx")
    assert main(["eval", str(path), str(corpus)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "codec" in err and "rebuild the corpus" in err


@pytest.mark.parametrize(("name", "content", "message"), [
    ("missing.onnx", None, "not found"),
    ("junk.onnx", b"no model here", "not a readable ONNX model"),
])  # fmt: skip
def test_an_unusable_model_file_is_reported_in_one_line(
    corpus: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    content: bytes | None,
    message: str,
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    assert main(["eval", str(path), str(corpus)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert message in err


def test_a_folder_that_is_no_corpus_is_reported_in_one_line(
    model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["eval", str(model_path), str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "not a corpus" in err


def test_split_must_be_held_out(corpus: Path, model_path: Path) -> None:
    with pytest.raises(EvalError, match="split"):
        evaluate(model_path, corpus, split="train")


def test_eval_is_the_antiphon_eval_subcommand() -> None:
    assert ("eval", "antiphon.training.eval_command") in [
        (name, module) for name, module, _ in COMMANDS
    ]


def test_eval_needs_neither_torch_nor_heavy_imports_to_load() -> None:
    code = (
        "import sys, antiphon.training.eval_command\n"
        "assert not {'numpy', 'onnxruntime', 'torch'} & set(sys.modules), sys.modules.keys()\n"
        "import antiphon.training.evaluate\n"
        "assert 'torch' not in sys.modules and 'onnx' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_long_stream_is_the_torch_model_run_once_over_the_whole_split(
    corpus: Path, model_path: Path, lstm: NoteLSTM
) -> None:
    from antiphon.training.long_stream import evaluate_long

    pieces = _pieces(corpus)
    stream = np.concatenate(pieces)
    first_tokens = np.cumsum([len(p) for p in pieces]) - [len(p) for p in pieces]
    with torch.no_grad():
        logits, _ = lstm(torch.as_tensor(stream[None, :-1], dtype=torch.int64))
        log_probs = torch.log_softmax(logits[0].double(), dim=-1).numpy()
    targets = np.arange(1, len(stream))
    targets = targets[~np.isin(targets, first_tokens)]  # never scored: nothing foretells them
    expected_bits = -log_probs[targets - 1, stream[targets]].sum() / np.log(2.0)

    report = evaluate_long(model_path, corpus, batch=2, threads=1)
    assert report.long.tokens == len(targets) == report.carried.tokens
    assert report.long.bits == pytest.approx(expected_bits, rel=1e-4)
    assert report.performances == len(pieces) >= 2
    # Through one state, a performance is scored after the others: not as from zero.
    assert report.long.bits != pytest.approx(report.carried.bits, rel=1e-9)


def test_eval_long_prints_the_drift_and_fails_beyond_the_limit(
    corpus: Path, model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "long.json"
    rc = main(["eval", str(model_path), str(corpus), "--long", "--json", str(out)])
    data = json.loads(out.read_text())
    assert rc == (0 if data["drift"] <= 0.03 else 3)
    assert data["no_drift"] == (data["drift"] <= 0.03)
    assert "one stream, never reset" in capsys.readouterr().out
