"""Training: stateful batches, augmentation, a short run whose loss falls, exact resume, DDP."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from antiphon.daemon.codec import CodecConfig, Vocabulary
from antiphon.training.batches import IGNORE, Augmentation, StreamBatches, augment_notes
from antiphon.training.checkpoint import load_checkpoint
from antiphon.training.train import TrainConfig, train
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.tiny_corpus import scale_notes, tiny_train_config, write_tiny_corpus

torch.set_num_threads(1)


def _streams(lengths: list[int]) -> list[np.ndarray]:
    """Performances whose tokens name their performance and position (unique, traceable)."""
    return [(1000 * i + np.arange(n)).astype(np.int16) for i, n in enumerate(lengths)]


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 40), min_size=1, max_size=12),
    rows=st.integers(1, 5),
    window=st.integers(1, 9),
    seed=st.integers(0, 2**16),
)
def test_each_row_is_its_performances_end_to_end_with_resets_exactly_at_their_starts(
    lengths: list[int], rows: int, window: int, seed: int
) -> None:
    streams = _streams(lengths)
    batches = StreamBatches(streams, rows, window, np.random.default_rng(seed))
    windows = [batches.batch(k) for k in range(len(batches))]
    used = sorted(i for row in batches.row_performances for i in row)
    assert used == [i for i, n in enumerate(lengths) if n >= 2]
    for row, performances in enumerate(batches.row_performances):
        inputs = np.concatenate([w.inputs[row] for w in windows]) if windows else np.zeros(0)
        targets = np.concatenate([w.targets[row] for w in windows]) if windows else np.zeros(0)
        resets = [k for k, w in enumerate(windows) if w.reset[row]]
        scored = targets != IGNORE
        expected_in = [streams[i][:-1] for i in performances]
        expected_out = [streams[i][1:] for i in performances]
        assert inputs[scored].tolist() == np.concatenate([[], *expected_in]).tolist()
        assert targets[scored].tolist() == np.concatenate([[], *expected_out]).tolist()
        starts, at = [], 0
        for i in performances:
            starts.append(at)
            at += -(-(lengths[i] - 1) // window)
        assert resets == starts


def test_random_restarts_follow_the_probability_and_keep_performance_starts() -> None:
    streams = _streams([400] * 8)
    always = StreamBatches(streams, 4, 10, np.random.default_rng(0), reset_probability=1.0)
    assert all(always.batch(k).reset.all() for k in range(len(always)))
    some = StreamBatches(streams, 4, 10, np.random.default_rng(0), reset_probability=0.1)
    never = StreamBatches(streams, 4, 10, np.random.default_rng(0), reset_probability=0.0)
    extra = sum(int(some.batch(k).reset.sum() - never.batch(k).reset.sum()) for k in range(80))
    assert 10 <= extra <= 60  # about 0.1 of the 4 x 80 windows, minus the 8 starts


def test_windows_past_the_end_score_nothing_so_ranks_can_take_equal_steps() -> None:
    batches = StreamBatches(_streams([30]), 2, 8, np.random.default_rng(0))
    past = batches.batch(len(batches) + 3)
    assert (past.targets == IGNORE).all()
    assert past.reset.all()


@settings(max_examples=40, deadline=None)
@given(low_pitch=st.integers(0, 127), span=st.integers(0, 30), seed=st.integers(0, 2**16))
def test_augmentation_keeps_every_note_playable(low_pitch: int, span: int, seed: int) -> None:
    notes = scale_notes(60, 24, 0.2, seed)
    pitches = notes[:, 0] - notes[:, 0].min()
    notes[:, 0] = np.clip(low_pitch + pitches * span / max(1, pitches.max()), 0, 127).round()
    out = augment_notes(notes, np.random.default_rng(seed), Augmentation(jitter_s=0.02))
    assert len(out) == len(notes)
    assert out[:, 0].min() >= 0 and out[:, 0].max() <= 127
    shift = out[:, 0] - notes[:, 0]
    assert np.all(shift == shift[0]) and abs(shift[0]) <= 5
    assert np.all(out[:, 1] >= 0) and np.all(out[:, 2] >= out[:, 1])
    assert np.all((out[:, 3] >= 1) & (out[:, 3] <= 127))


def test_augmentation_changes_tempo_and_velocity_within_bounds() -> None:
    notes = scale_notes(60, 40, 0.2, 0)
    out = augment_notes(notes, np.random.default_rng(3), Augmentation(jitter_s=0.0))
    ratio = out[-1, 1] / notes[-1, 1]
    assert 0.9 <= ratio <= 1.1 and ratio != 1.0
    scale = out[:, 3] / notes[:, 3]
    assert np.all((scale > 0.78) & (scale < 1.22))


def _config(corpus: Path, out: Path, **changes: object) -> TrainConfig:
    return tiny_train_config(corpus, out, **changes)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_corpus(tmp_path_factory.mktemp("corpus"))


def test_a_short_run_learns_the_exercises_and_writes_its_record(tmp_path: Path) -> None:
    # Two training exercises seen 30 times, unaugmented: enough for a clear fall in seconds.
    corpus = write_tiny_corpus(tmp_path / "corpus", performances=4)
    config = _config(corpus, tmp_path, epochs=30, batch_size=2, lr=1e-2, augment=False)
    progress = train(config)
    curve = [p["bits_per_token"] for p in progress.train_curve]
    assert progress.step > 200
    assert np.mean(curve[-3:]) < np.mean(curve[:3]) - 2.0
    validation = [p["bits_per_token"] for p in progress.validation]
    assert len(validation) == 30 and all(np.isfinite(validation))  # one per epoch
    for name in ("last.pt", "best.pt", "loss.png", "history.json"):
        assert (tmp_path / name).stat().st_size > 0
    saved = load_checkpoint(tmp_path / "best.pt")
    assert CodecConfig.from_json(saved["codec"]) == CodecConfig()
    assert saved["model_config"]["vocab_size"] == Vocabulary(CodecConfig()).size


def test_resume_continues_exactly_where_the_run_stopped(corpus: Path, tmp_path: Path) -> None:
    straight = train(_config(corpus, tmp_path / "straight", max_steps=12))
    train(_config(corpus, tmp_path / "split", max_steps=5))
    resumed = train(_config(corpus, tmp_path / "split", max_steps=12), resume=True)
    assert resumed.step == straight.step == 12
    assert resumed.tokens == straight.tokens
    a = load_checkpoint(tmp_path / "straight" / "last.pt")
    b = load_checkpoint(tmp_path / "split" / "last.pt")
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    assert a["optimizer"]["state"][0]["step"] == b["optimizer"]["state"][0]["step"]


DDP_SCRIPT = """
import sys
import torch
from antiphon.training.train import TrainConfig, Trainer

config = TrainConfig(corpus_dir=sys.argv[1], out_dir=sys.argv[2], epochs=2, batch_size=2,
                     window=32, embedding=16, hidden=32, threads=1, warmup_steps=5)
trainer = Trainer(config)
try:
    progress = trainer.run()
    torch.save({"model": trainer.model.state_dict(), "step": progress.step},
               f"{sys.argv[2]}/rank{trainer.ranks.rank}-of-{trainer.ranks.world}.pt")
finally:
    trainer.close()
"""


@pytest.mark.slow
def test_two_process_ddp_run_finishes_with_identical_weights(corpus: Path, tmp_path: Path) -> None:
    script = tmp_path / "ddp_train.py"
    script.write_text(textwrap.dedent(DDP_SCRIPT))
    out = tmp_path / "run"
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc-per-node", "2", str(script), str(corpus), str(out)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    rank0 = torch.load(out / "rank0-of-2.pt")
    rank1 = torch.load(out / "rank1-of-2.pt")
    assert rank0["step"] == rank1["step"] > 0
    for name, tensor in rank0["model"].items():
        assert torch.equal(tensor, rank1["model"][name]), name
    saved = load_checkpoint(out / "last.pt")
    assert len(saved["per_rank"]) == 2
    assert saved["progress"]["step"] == rank0["step"]
