"""What ``--seed`` promises: the same seeded replies under onnxruntime's other settings.

``python -m antiphon.daemon.tools.seed_stability [--json OUT]`` answers the same calls with
the same seeds under each graph optimization level and intra-op thread count, and compares
every reply, note for note, with the daemon's own setting (all optimizations, one thread).
Those settings change which kernels run and in which order the sums are added, as a different
processor may (AVX2, AVX-512, FMA). Beside it, the largest difference in any logit over the
same token stream. A last variant, ``last-bit``, stands in for a processor whose kernels round
differently: after every step it moves each logit and each number of the recurrent state by
one unit in the last place, up or down by a hash of the value; the replies that change then
are about those a machine with other kernels may play differently. The suite runs the same
way with ``ANTIPHON_TEST_ROUNDING=other`` (tests/other_rounding.py).

The calls are made here, from a seeded random generator (no file needed): single lines and
chords at several paces and registers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import mido
import numpy as np
import onnxruntime as ort
from antiphon.daemon.musician.model.engine import Engine
from antiphon.daemon.musician.model.model_file import session_options
from antiphon.daemon.respond import TimedMessage, respond
from antiphon.daemon.settings import PIANO_MODEL, Settings

LEVELS = {
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
}
THREADS = (1, 2)
DAEMON_SETTING = ("all", 1)


_MIX = np.uint32(2654435761)  # Knuth's multiplicative hash


def round_otherwise(values: np.ndarray) -> None:
    """Move each float32 of ``values`` one unit in the last place, in place, up or down by a
    hash of the value: the same value always rounds the same way, so a state rolled back and
    drawn from again (a reply's marks) repeats."""
    up = (((values.view(np.uint32) * _MIX) >> np.uint32(13)) & np.uint32(1)).astype(bool)
    higher = np.nextafter(values, np.float32(np.inf))
    lower = np.nextafter(values, np.float32(-np.inf))
    values[...] = np.where(up, higher, lower)


def round_step_otherwise(engine: Engine) -> None:
    """Round what the engine's last step computed otherwise: the logits and the recurrent
    state the next step and the next draw read (see Engine.feed's buffer swap)."""
    current = engine._current
    for values in (engine._logits_row, engine._h[current], engine._c[current]):
        round_otherwise(values)


class LastBitEngine(Engine):
    """The engine, its logits and recurrent state moved one unit in the last place after each
    step (:func:`round_step_otherwise`): another processor's rounding."""

    def feed(self, token: int, *, perturb: bool = False) -> None:
        super().feed(token, perturb=perturb)
        round_step_otherwise(self)


def options_for(level: str, threads: int) -> ort.SessionOptions:
    """The daemon's session options with another optimization level and thread count."""
    options = session_options()
    options.graph_optimization_level = LEVELS[level]
    options.intra_op_num_threads = threads
    return options


def random_call(rng: np.random.Generator) -> list[TimedMessage]:
    """A call of 4 to 12 onsets: a single line or chords of 2 to 4 notes, a steady pace."""
    onsets = int(rng.integers(4, 13))
    ioi_s = float(rng.uniform(0.12, 0.6))
    size = 1 if rng.random() < 0.5 else int(rng.integers(2, 5))
    pitch = int(rng.integers(48, 80))
    out: list[TimedMessage] = []
    for i in range(onsets):
        pitch = int(np.clip(pitch + rng.integers(-4, 5), 36, 90))
        velocity = int(rng.integers(40, 110))
        for k in range(size):
            note = pitch - 4 * k
            out.append((i * ioi_s, mido.Message("note_on", note=note, velocity=velocity)))
            out.append(((i + 0.8) * ioi_s, mido.Message("note_off", note=note)))
    out.sort(key=lambda timed: (timed[0], timed[1].type == "note_on"))
    return out


def replies(
    model: str,
    calls: list[list[TimedMessage]],
    seeds: int,
    options: ort.SessionOptions,
    engine_type: type[Engine] = Engine,
) -> list[list[tuple[float, str, int, int]]]:
    """Every call answered with seeds 0..seeds-1 (the fixed gap: the judge is not measured)."""
    out = []
    for call in calls:
        for seed in range(seeds):
            settings = Settings(
                model=model, seed=seed, echo_window_ms=0.0, turns="gap", phrase_gap_s=0.35
            )
            engine = engine_type(model, seed=seed, session_options=options)
            reply = respond(call, settings, engine)
            out.append([(round(t, 9), m.type, m.note, m.velocity) for t, m in reply])
    return out


def logit_spread(
    model: str,
    options: ort.SessionOptions,
    engine_type: type[Engine] = Engine,
    steps: int = 400,
) -> np.ndarray:
    """The logits after each of ``steps`` tokens of a fixed, seeded token stream."""
    engine = engine_type(model, seed=0, session_options=options)
    rng = np.random.default_rng(0)
    rows = []
    for token in rng.integers(0, engine.vocabulary.size, steps):
        engine.feed(int(token))
        rows.append(engine.logits.copy())
    return np.asarray(rows)


def measure(model: str, calls: int, seeds: int) -> dict[str, Any]:
    rng = np.random.default_rng(2026)
    made = [random_call(rng) for _ in range(calls)]
    reference = replies(model, made, seeds, options_for(*DAEMON_SETTING))
    reference_logits = logit_spread(model, options_for(*DAEMON_SETTING))
    variants = {}
    settings = [(f"{level}/{threads}", options_for(level, threads), Engine)
                for level in LEVELS for threads in THREADS
                if (level, threads) != DAEMON_SETTING]  # fmt: skip
    settings.append(("last-bit", options_for(*DAEMON_SETTING), LastBitEngine))
    for name, options, engine_type in settings:
        these = replies(model, made, seeds, options, engine_type)
        logits = logit_spread(model, options, engine_type)
        variants[name] = {
            "replies_identical": sum(a == b for a, b in zip(these, reference, strict=True)),
            "logits_max_abs_diff": float(np.abs(logits - reference_logits).max()),
            "logits_bit_identical": bool(np.array_equal(logits, reference_logits)),
        }
    return {
        "model": str(model),
        "replies": len(reference),
        "reference": "/".join(map(str, DAEMON_SETTING)),
        "onnxruntime": ort.__version__,
        "variants": variants,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(PIANO_MODEL))
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    figures = measure(args.model, args.calls, args.seeds)
    text = json.dumps(figures, indent=2)
    if args.json is not None:
        args.json.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
