"""Training the note LSTM: stateful truncated BPTT, validation, checkpoints, DDP.

One process trains on CPU or one GPU; under ``torchrun`` every process is a rank of a
PyTorch DistributedDataParallel job (NCCL on CUDA, Gloo on CPU). Each rank encodes and
trains on its own disjoint share of the training performances; gradients are averaged by
DDP; only rank 0 writes checkpoints, plots and the progress bar. The parts the trainer drives
live beside it: ``ranks`` (the torchrun job), ``optimizer`` (parameter groups, LR schedule),
``validation`` (bits per token), ``checkpoint`` (the files) and ``curves`` (``loss.png``).

Everything random is seeded: an epoch's augmentation and batch layout come from
``(seed, epoch, rank)``, so ``--resume`` rebuilds the interrupted epoch exactly and carries on
from the saved window with the saved recurrent state, optimiser, schedule and RNG states.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from antiphon.daemon.codec import Vocabulary
from antiphon.training.batches import (
    IGNORE,
    NO_AUGMENTATION,
    Augmentation,
    StreamBatches,
    encode_performances,
)
from antiphon.training.checkpoint import TrainingError, load_checkpoint, write_checkpoint
from antiphon.training.curves import plot_loss
from antiphon.training.model import NoteLSTM, State
from antiphon.training.optimizer import WarmupCosine, decay_groups
from antiphon.training.ranks import (
    Ranks,
    all_gather,
    all_max,
    all_sum,
    any_rank,
    pick_device,
    start_ranks,
    stop_ranks,
)
from antiphon.training.validation import LN2, evaluate_bits, reset_rows
from torch import nn
from torch.nn.parallel import DistributedDataParallel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run (saved in every checkpoint)."""

    corpus_dir: str
    out_dir: str
    epochs: int = 30
    batch_size: int = 64  # rows per process
    window: int = 128  # tokens per truncated-BPTT window
    embedding: int = 128
    hidden: int = 256
    layers: int = 2
    dropout: float = 0.1
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup_steps: int = 200
    clip_norm: float = 1.0
    reset_probability: float = 0.01  # chance that a window restarts from zero state
    augment: bool = True
    # Velocities scaled by [1 - this, 1 + this] per performance. jazz-solos-dev's lie near
    # the top (about 100 to 120): scaled up they pile up at 127, and a model fine-tuned on
    # them scored 6.9 bits per velocity token on validation soloists against an order-2
    # Markov chain's 4.2.
    velocity_spread: float = 0.2
    seed: int = 0
    max_steps: int | None = None  # stop after this many steps (the schedule follows epochs)
    max_minutes: float | None = None  # wall-clock budget, final validation included
    patience: int = 5  # epochs without a better validation score before stopping
    device: str = "auto"
    threads: int | None = None
    checkpoint_minutes: float = 10.0  # also save last.pt this often inside an epoch
    init_from: str | None = None  # a float32 .onnx model whose weights start the run
    log_every: int = 20  # steps between points of the training curve


@dataclass
class Progress:
    """The run's position and record; saved in every checkpoint."""

    epoch: int = 0
    batch_in_epoch: int = 0  # next window of ``epoch`` to train on
    step: int = 0
    tokens: int = 0
    best_bits: float = math.inf
    best_epoch: int = -1
    epochs_without_gain: int = 0
    seconds: float = 0.0
    train_curve: list[dict[str, float]] = field(default_factory=list)
    validation: list[dict[str, float]] = field(default_factory=list)


def epoch_batches(
    performances: list[np.ndarray],
    vocabulary: Vocabulary,
    config: TrainConfig,
    epoch: int,
    ranks: Ranks,
) -> StreamBatches:
    """This rank's windows for one epoch: its share of the performances, freshly augmented."""
    order = np.random.default_rng([config.seed, epoch]).permutation(len(performances))
    mine = [performances[i] for i in order[ranks.rank :: ranks.world]]
    rng = np.random.default_rng([config.seed, epoch, ranks.rank])
    spread = config.velocity_spread
    aug = (
        Augmentation(velocity_low=1.0 - spread, velocity_high=1.0 + spread)
        if config.augment
        else NO_AUGMENTATION
    )
    streams = encode_performances(mine, vocabulary, rng, aug)
    return StreamBatches(streams, config.batch_size, config.window, rng, config.reset_probability)


class Trainer:
    """One training run: build, (resume,) train, validate, checkpoint, stop."""

    def __init__(self, config: TrainConfig, resume: bool = False) -> None:
        from antiphon.training.corpus import load_codec, load_split

        self.config = config
        self.ranks = start_ranks(config.device)
        self.device = pick_device(config.device, self.ranks)
        threads = config.threads or max(1, (os.cpu_count() or 1) // self.ranks.world)
        torch.set_num_threads(threads)
        self.threads = threads
        self.out = Path(config.out_dir)
        corpus = Path(config.corpus_dir)
        self.codec = load_codec(corpus)
        self.vocabulary = Vocabulary(self.codec)
        self.train_notes = [notes for _, notes in load_split(corpus, "train")]
        if not self.train_notes:
            raise TrainingError(f"{corpus}: the train split is empty")
        validation_notes = [notes for _, notes in load_split(corpus, "validation")]
        self.validation_streams = encode_performances(
            validation_notes, self.vocabulary, np.random.default_rng(0)
        )
        torch.manual_seed(config.seed + self.ranks.rank)
        self.model = NoteLSTM(
            self.vocabulary.size, config.embedding, config.hidden, config.layers, config.dropout
        )
        if config.init_from is not None and not resume:
            from antiphon.training.warm_start import WarmStartError, warm_start

            try:
                warm_start(self.model, self.codec, Path(config.init_from))
            except WarmStartError as err:
                raise TrainingError(str(err)) from err
        self.model = self.model.to(self.device)
        self.optimizer = torch.optim.AdamW(
            decay_groups(self.model, config.weight_decay), lr=config.lr
        )
        self.schedule_factor = WarmupCosine(config.warmup_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self.schedule_factor)
        self.progress = Progress()
        self.state: State | None = None
        self.loop_seconds = 0.0  # time spent in training steps by this process
        self.loop_steps = 0
        self.epoch_overhead_s = 0.0  # encoding plus validation, measured at each epoch
        self.steps_per_epoch = 1
        self.validation_seconds: float | None = None
        self.command = [Path(sys.argv[0]).name, *sys.argv[1:]]
        if resume:
            self._resume()
        self.net: nn.Module = self.model
        if self.ranks.distributed:
            ids = [self.ranks.local_rank] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)

    # Checkpoints -------------------------------------------------------------------------

    def _resume(self) -> None:
        path = self.out / "last.pt"
        if not path.exists():
            raise TrainingError(f"{path}: nothing to resume")
        saved = load_checkpoint(path)
        if saved["model_config"] != self.model.config.to_dict():
            raise TrainingError(f"{path}: model shape differs from the requested one")
        if saved["codec"] != self.codec.to_json():
            raise TrainingError(f"{path}: codec differs from the corpus codec")
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.progress = Progress(**saved["progress"])
        per_rank = saved["per_rank"]
        if len(per_rank) == self.ranks.world:
            mine = per_rank[self.ranks.rank]
            torch.set_rng_state(mine["rng"])
            if mine["cuda_rng"] is not None and self.device.type == "cuda":
                torch.cuda.set_rng_state(mine["cuda_rng"])
            if mine["h"] is not None:
                self.state = (mine["h"].to(self.device), mine["c"].to(self.device))
        else:
            log.warning("resuming with a different number of processes: state starts at zero")
        log.info("resumed %s at epoch %d, step %d", path, self.progress.epoch, self.progress.step)

    def _gather_rank_state(self) -> list[Any]:
        mine = {
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state() if self.device.type == "cuda" else None,
            "h": None if self.state is None else self.state[0].detach().cpu(),
            "c": None if self.state is None else self.state[1].detach().cpu(),
        }
        return all_gather(mine, self.ranks)

    def facts(self) -> dict[str, Any]:
        """What an exported model says about how it was trained."""
        p = self.progress
        info_path = Path(self.config.corpus_dir) / "corpus.json"
        corpus_info = json.loads(info_path.read_text(encoding="utf-8"))
        return {
            "corpus": str(self.config.corpus_dir),
            "corpus_splits": corpus_info.get("splits"),
            "parameters": self.model.parameter_count(),
            "epochs": p.epoch + (p.batch_in_epoch > 0),
            "steps": p.step,
            "tokens": p.tokens,
            "validation_bits_per_token": p.validation[-1]["bits_per_token"]
            if p.validation
            else None,
            "best_validation_bits_per_token": None if math.isinf(p.best_bits) else p.best_bits,
            "best_epoch": p.best_epoch,
            "train_seconds": round(p.seconds, 1),
            "date": datetime.now(UTC).strftime("%Y-%m-%d"),
            "hardware": self._hardware(),
            "command": " ".join(self.command),
            "config": asdict(self.config),
        }

    def _hardware(self) -> str:
        if self.device.type == "cuda":
            name = torch.cuda.get_device_name(self.device)
        else:
            name = f"{platform.processor() or platform.machine()} CPU, {self.threads} threads"
        return f"{self.ranks.world} x {name}, torch {torch.__version__}"

    def save(self, names: tuple[str, ...]) -> None:
        """Write ``RUN_DIR/<name>`` for each name (rank 0), after gathering every rank's state."""
        per_rank = self._gather_rank_state()
        if not self.ranks.main:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        payload = {
            "model_config": self.model.config.to_dict(),
            "codec": self.codec.to_json(),
            "train_config": asdict(self.config),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "progress": asdict(self.progress),
            "per_rank": per_rank,
            "facts": json.dumps(self.facts()),
        }
        write_checkpoint(payload, self.out, names)
        history = {
            "train": self.progress.train_curve,
            "validation": self.progress.validation,
            "facts": self.facts(),
        }
        (self.out / "history.json").write_text(json.dumps(history, indent=1), encoding="utf-8")

    def plot(self) -> None:
        if self.ranks.main:
            plot_loss(self.progress.train_curve, self.progress.validation, self.out / "loss.png")

    # Training ----------------------------------------------------------------------------

    def _plan(self, steps_per_epoch: int) -> None:
        """Fix the schedule length once, from the first epoch's size."""
        self.steps_per_epoch = steps_per_epoch
        if not self.schedule_factor.planned:
            planned = max(1, steps_per_epoch * self.config.epochs)
            self.schedule_factor.planned = self.schedule_factor.total = planned

    def _fit_budget(self) -> None:
        """Fit the schedule to the wall-clock budget, so the LR reaches zero as time runs out.

        Steps left = time left / (seconds per step + the epoch overhead spread over an
        epoch's steps), never more than ``--epochs`` asks for.
        """
        if self.config.max_minutes is None or self.loop_steps < 20:
            return
        per_step = self.loop_seconds / self.loop_steps
        per_step += self.epoch_overhead_s / max(1, self.steps_per_epoch)
        left = self.deadline - time.perf_counter() - self._validation_estimate()
        reachable = self.progress.step + max(1, int(max(0.0, left) / per_step))
        total = min(self.schedule_factor.planned, reachable)
        if total != self.schedule_factor.total:
            log.info("time budget: the LR schedule now ends at step %d", total)
            self.schedule_factor.total = total

    def _validation_estimate(self) -> float:
        """Seconds the next validation will take: as long as the last one, or a guess from
        the training speed (a forward pass costs about a third of a training step). The
        speed is the curve's median: near an epoch's end most rows are padding, and the
        last point's speed in real tokens can be a hundredth of the usual, which once ended
        a fine-tuning run half-way through its budget."""
        if self.validation_seconds is not None:
            return self.validation_seconds
        curve = self.progress.train_curve
        if not curve:
            return 0.0
        tokens = sum(len(s) - 1 for s in self.validation_streams)
        speed = float(np.median([point["tokens_per_s"] for point in curve]))
        return tokens / (3.0 * max(speed, 1e-9))

    def _due(self, last_save: float) -> tuple[bool, bool]:
        """(out of time, checkpoint due), decided by every rank together."""
        now = time.perf_counter()
        late = now + self._validation_estimate() >= self.deadline
        save = now - last_save > 60.0 * self.config.checkpoint_minutes
        late, save = any_rank([late, save], self.ranks, self.device)
        return late, save

    def run(self) -> Progress:
        """Train until the epochs, patience, step limit or time budget end; returns the record."""
        config = self.config
        started = time.perf_counter()
        self.deadline = started + 60.0 * (config.max_minutes or math.inf)
        seconds_before = self.progress.seconds
        last_save = started
        stop = False
        if self.ranks.main:
            self.out.mkdir(parents=True, exist_ok=True)
        while self.progress.epoch < config.epochs and not stop:
            epoch = self.progress.epoch
            overhead_start = time.perf_counter()
            batches = epoch_batches(self.train_notes, self.vocabulary, config, epoch, self.ranks)
            steps = all_max(len(batches), self.ranks, self.device)
            self._plan(steps)
            if self.state is None or self.progress.batch_in_epoch == 0:
                self.state = self.model.initial_state(config.batch_size, self.device)
            bar = self._bar(steps, epoch)
            window_nats, window_count, window_start = 0.0, 0, time.perf_counter()
            encode_s = time.perf_counter() - overhead_start
            for k in range(self.progress.batch_in_epoch, steps):
                step_start = time.perf_counter()
                nats, count = self._step(batches.batch(k))
                self.loop_seconds += time.perf_counter() - step_start
                self.loop_steps += 1
                self.progress.batch_in_epoch = k + 1
                window_nats += nats
                window_count += count
                if bar is not None:
                    bar.update(1)
                if self.progress.step % config.log_every == 0 and window_count:
                    rate = window_count * self.ranks.world / (time.perf_counter() - window_start)
                    self._log_point(window_nats / window_count / LN2, rate, bar)
                    window_nats, window_count, window_start = 0.0, 0, time.perf_counter()
                if self.loop_steps == 20:
                    self._fit_budget()
                late, save_due = self._due(last_save)
                if config.max_steps is not None and self.progress.step >= config.max_steps:
                    stop = True
                elif late:
                    log.info("time budget reached at step %d", self.progress.step)
                    stop = True
                if stop:
                    break
                if save_due:
                    self.progress.seconds = seconds_before + time.perf_counter() - started
                    self.save(("last.pt",))
                    last_save = time.perf_counter()
            if bar is not None:
                bar.close()
            if self.progress.batch_in_epoch >= steps:
                self.progress.epoch += 1
                self.progress.batch_in_epoch = 0
            validation_start = time.perf_counter()
            improved = self._validate()
            self.epoch_overhead_s = encode_s + time.perf_counter() - validation_start
            self._fit_budget()
            self.progress.seconds = seconds_before + time.perf_counter() - started
            self.save(("last.pt", "best.pt") if improved else ("last.pt",))
            self.plot()
            if self.progress.epochs_without_gain >= config.patience:
                log.info("no validation gain for %d epochs: stopping", config.patience)
                stop = True
        return self.progress

    def _bar(self, steps: int, epoch: int) -> Any:
        if not self.ranks.main:
            return None
        from tqdm import tqdm

        return tqdm(
            total=steps,
            initial=self.progress.batch_in_epoch,
            desc=f"epoch {epoch + 1}/{self.config.epochs}",
            unit="step",
            mininterval=1.0,
            dynamic_ncols=True,
        )

    def _log_point(self, bits: float, tokens_per_s: float, bar: Any) -> None:
        lr = float(self.scheduler.get_last_lr()[0])
        point = {"step": self.progress.step, "bits_per_token": bits, "lr": lr}
        self.progress.train_curve.append({**point, "tokens_per_s": tokens_per_s})
        if bar is not None:
            bar.set_postfix(bits=f"{bits:.3f}", tok_s=f"{tokens_per_s:.0f}", lr=f"{lr:.2e}")

    def _step(self, batch: Any) -> tuple[float, int]:
        """One optimiser step on one window; returns (summed nats, tokens) of this rank."""
        assert self.state is not None
        device = self.device
        inputs = torch.from_numpy(batch.inputs).to(device, non_blocking=True)
        targets = torch.from_numpy(batch.targets).to(device, non_blocking=True)
        reset = torch.from_numpy(batch.reset).to(device)
        count = int((batch.targets != IGNORE).sum())
        (total,) = all_sum([float(count)], self.ranks, device)
        self.state = reset_rows(self.state, reset)
        if total == 0:
            return 0.0, 0
        logits, state = self.net(inputs, self.state)
        self.state = (state[0].detach(), state[1].detach())
        nats = nn.functional.cross_entropy(
            logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE, reduction="sum"
        )
        # DDP averages gradients over ranks: scale so the result is the mean over all tokens.
        loss = nats * (self.ranks.world / total)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.progress.step += 1
        self.progress.tokens += int(total)
        return float(nats.detach()), count

    def _validate(self) -> bool:
        """Score the validation split; True when it is the best so far."""
        if not self.validation_streams:
            return False
        started = time.perf_counter()
        bits, tokens = evaluate_bits(
            self.model,
            self.validation_streams,
            self.config.batch_size,
            self.config.window * 4,
            self.device,
            self.ranks,
        )
        self.validation_seconds = time.perf_counter() - started
        p = self.progress
        p.validation.append(
            {"epoch": p.epoch, "step": p.step, "bits_per_token": bits, "tokens": tokens}
        )
        if self.ranks.main:
            log.info("epoch %d step %d: validation %.4f bits/token", p.epoch, p.step, bits)
        if bits < p.best_bits:
            p.best_bits, p.best_epoch, p.epochs_without_gain = bits, p.epoch, 0
            return True
        p.epochs_without_gain += 1
        return False

    def close(self) -> None:
        stop_ranks(self.ranks)


def train(config: TrainConfig, resume: bool = False) -> Progress:
    """Run (or resume) a training run; returns its final record."""
    trainer = Trainer(config, resume)
    try:
        return trainer.run()
    finally:
        trainer.close()
